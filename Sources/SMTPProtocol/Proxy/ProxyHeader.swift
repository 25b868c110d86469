/// The header a load balancer puts in front of a proxied connection (HAProxy's PROXY
/// protocol, versions 1 and 2): who the client really is.
public struct ProxyHeader: Sendable, Equatable {
    public enum Command: String, Sendable {
        /// A proxied connection: `source` is the client.
        case proxy
        /// The proxy's own connection (a health check): use the real endpoints.
        case local
        /// Proxied, but the proxy could not say from where (v1 `UNKNOWN`, or a v2 family
        /// other than TCP over IPv4 or IPv6): use the real endpoints.
        case unknown
    }

    public var version: Int
    public var command: Command
    public var source: (address: IPAddress, port: Int)?
    public var destination: (address: IPAddress, port: Int)?

    public init(version: Int, command: Command, source: (IPAddress, Int)? = nil, destination: (IPAddress, Int)? = nil) {
        self.version = version
        self.command = command
        self.source = source.map { (address: $0.0, port: $0.1) }
        self.destination = destination.map { (address: $0.0, port: $0.1) }
    }

    public static func == (a: ProxyHeader, b: ProxyHeader) -> Bool {
        a.version == b.version && a.command == b.command
            && a.source?.address == b.source?.address && a.source?.port == b.source?.port
            && a.destination?.address == b.destination?.address && a.destination?.port == b.destination?.port
    }
}

/// What the first octets of a connection say.
public enum ProxyParse: Equatable, Sendable {
    /// Not enough octets yet to decide.
    case incomplete
    /// A whole header, `length` octets long; what follows belongs to the client.
    case header(ProxyHeader, length: Int)
    /// Not a valid header: the connection is dropped.
    case invalid(String)
}

/// A pure parser of both versions, fed the connection's first octets (as many as have
/// come). It never reads past `maxLength`.
public enum ProxyHeaderParser {
    /// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Prefix = Array("PROXY ".utf8)
    /// v1's limit (the spec's 107 octets, CRLF included).
    public static let maxV1Length = 107
    /// Our limit for v2, whose length field allows 64 KiB: 16 octets, the addresses and up
    /// to about 1.5 KiB of TLVs (AWS and Azure send well under 100).
    public static let maxLength = 2048

    public static func parse(_ b: some Collection<UInt8>) -> ProxyParse {
        let bytes = Array(b.prefix(maxLength))
        if bytes.isEmpty { return .incomplete }
        if bytes[0] == signature[0] { return parseV2(bytes) }
        return parseV1(bytes)
    }

    // MARK: Version 1

    static func parseV1(_ bytes: [UInt8]) -> ProxyParse {
        let n = min(bytes.count, v1Prefix.count)
        guard bytes[..<n].elementsEqual(v1Prefix[..<n]) else { return .invalid("not a PROXY protocol header") }
        guard let lf = bytes.prefix(maxV1Length).firstIndex(of: 0x0A) else {
            return bytes.count >= maxV1Length ? .invalid("PROXY v1 header longer than 107 octets") : .incomplete
        }
        guard lf > 0, bytes[lf - 1] == 0x0D else { return .invalid("PROXY v1 header does not end with CRLF") }
        let text = String(decoding: bytes[v1Prefix.count..<(lf - 1)], as: UTF8.self)
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard let family = parts.first else { return .invalid("PROXY v1 header without a protocol") }
        if family == "UNKNOWN" { return .header(ProxyHeader(version: 1, command: .unknown), length: lf + 1) }
        guard family == "TCP4" || family == "TCP6" else { return .invalid("PROXY v1 protocol '\(family.prefix(16))' is not TCP4, TCP6 or UNKNOWN") }
        guard parts.count == 5 else { return .invalid("PROXY v1 header needs source, destination and two ports") }
        guard let src = address(parts[1], v6: family == "TCP6"), let dst = address(parts[2], v6: family == "TCP6") else {
            return .invalid("PROXY v1 address is not \(family == "TCP6" ? "IPv6" : "IPv4")")
        }
        guard let sp = port(parts[3]), let dp = port(parts[4]) else { return .invalid("PROXY v1 port is not 0 to 65535") }
        return .header(ProxyHeader(version: 1, command: .proxy, source: (src, sp), destination: (dst, dp)), length: lf + 1)
    }

    static func address(_ s: Substring, v6: Bool) -> IPAddress? {
        guard let a = IPAddress(s) else { return nil }
        switch a {
        // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is IPv4, as everywhere else.
        case .v4: return v6 && !s.contains(":") ? nil : a
        case .v6: return v6 ? a : nil
        }
    }

    /// Decimal 0…65535 without a sign or leading zeros.
    static func port(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.count <= 5, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), s == "0" || s.first != "0",
              let v = Int(s), v <= 65535 else { return nil }
        return v
    }

    // MARK: Version 2

    static func parseV2(_ bytes: [UInt8]) -> ProxyParse {
        let n = min(bytes.count, signature.count)
        guard bytes[..<n].elementsEqual(signature[..<n]) else { return .invalid("not a PROXY protocol header") }
        guard bytes.count >= 16 else { return .incomplete }
        guard bytes[12] >> 4 == 2 else { return .invalid("PROXY v2 header with version \(bytes[12] >> 4)") }
        let length = 16 + (Int(bytes[14]) << 8 | Int(bytes[15]))
        guard length <= maxLength else { return .invalid("PROXY v2 header of \(length) octets is over the limit of \(maxLength)") }
        guard bytes.count >= length else { return .incomplete }
        let body = Array(bytes[16..<length])
        switch bytes[12] & 0x0F {
        case 0: return .header(ProxyHeader(version: 2, command: .local), length: length)
        case 1: break
        default: return .invalid("PROXY v2 command \(bytes[12] & 0x0F) is neither LOCAL nor PROXY")
        }
        let family = bytes[13] >> 4, transport = bytes[13] & 0x0F
        // Only TCP over IPv4 or IPv6 names a client we can check; anything else is proxied
        // from somewhere we cannot name (the spec: use the real endpoints).
        guard transport == 1, family == 1 || family == 2 else { return .header(ProxyHeader(version: 2, command: .unknown), length: length) }
        let size = family == 1 ? 4 : 16
        guard body.count >= 2 * size + 4 else { return .invalid("PROXY v2 address block of \(body.count) octets is too short") }
        let src = ip(body[0..<size]), dst = ip(body[size..<(2 * size)])
        let sp = Int(body[2 * size]) << 8 | Int(body[2 * size + 1])
        let dp = Int(body[2 * size + 2]) << 8 | Int(body[2 * size + 3])
        return .header(ProxyHeader(version: 2, command: .proxy, source: (src, sp), destination: (dst, dp)), length: length)
    }

    static func ip(_ b: ArraySlice<UInt8>) -> IPAddress {
        if b.count == 4 { return .v4(b.reduce(0) { $0 << 8 | UInt32($1) }) }
        // 16 octets here (the block's length was checked); ::ffff:a.b.c.d folds to IPv4.
        return b.count == 16 ? IPAddress(v6Bytes: Array(b)) : .v4(0)
    }
}
