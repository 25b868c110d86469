#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are folded to IPv4
/// so that a dual-stack listener matches IPv4 rules.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6(UInt64, UInt64)

    public init?(_ text: some StringProtocol) {
        let s = String(text)
        var a4 = in_addr()
        if inet_pton(AF_INET, s, &a4) == 1 {
            self = .v4(UInt32(bigEndian: a4.s_addr))
            return
        }
        var a6 = in6_addr()
        guard !s.isEmpty, inet_pton(AF_INET6, s, &a6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &a6) { Array($0) }
        self.init(v6Bytes: bytes)
    }

    public init(v6Bytes b: [UInt8]) {
        precondition(b.count == 16)
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(b[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(b[i]) }
        if hi == 0 && lo >> 32 == 0xffff {
            self = .v4(UInt32(truncatingIfNeeded: lo))
        } else {
            self = .v6(hi, lo)
        }
    }

    public var isIPv4: Bool { if case .v4 = self { return true } else { return false } }

    /// Network-order octets: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let v): return (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) }
        case .v6(let hi, let lo):
            return (0..<8).map { UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64($0))) }
                + (0..<8).map { UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64($0))) }
        }
    }

    public var description: String {
        switch self {
        case .v4(let v):
            return "\(v >> 24).\((v >> 16) & 0xff).\((v >> 8) & 0xff).\(v & 0xff)"
        case .v6(let hi, let lo):
            var a6 = in6_addr()
            withUnsafeMutableBytes(of: &a6) { p in
                for i in 0..<8 { p[i] = UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64(i))) }
                for i in 0..<8 { p[8 + i] = UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64(i))) }
            }
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            _ = inet_ntop(AF_INET6, &a6, &buf, socklen_t(buf.count))
            let len = buf.firstIndex(of: 0) ?? buf.count
            return String(decoding: buf[..<len].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}

/// A network: an address and a prefix length. Parses the forms mail admins write in
/// James' `authorizedAddresses` and Postfix' `mynetworks`: `127.0.0.1`, `127.0.0.0/8`,
/// `127.0.0.0/255.0.0.0`, `127.*`, `10.1.*.*`, `2001:db8::/32`, `[::1]/128`.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefix: Int

    public init(address: IPAddress, prefix: Int) {
        self.address = address
        self.prefix = prefix
    }

    public init?(_ text: some StringProtocol) {
        var s = String(text).trimmingSpaces()
        guard !s.isEmpty else { return nil }
        // Wildcard form: 127.* or 192.168.*.*
        if s.contains("*") {
            let parts = s.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 1, parts.count <= 4 else { return nil }
            var value: UInt32 = 0
            var fixed = 0
            var seenStar = false
            for p in parts {
                if p == "*" { seenStar = true; continue }
                guard !seenStar, let o = UInt8(p) else { return nil }
                value |= UInt32(o) << (24 - 8 * UInt32(fixed))
                fixed += 1
            }
            guard seenStar else { return nil }
            self.init(address: .v4(value), prefix: fixed * 8)
            return
        }
        var prefixText: Substring?
        if let slash = s.firstIndex(of: "/") {
            prefixText = s[s.index(after: slash)...]
            s = String(s[..<slash])
        }
        if s.hasPrefix("["), s.hasSuffix("]") { s = String(s.dropFirst().dropLast()) }
        guard let addr = IPAddress(s) else { return nil }
        let maxBits = addr.isIPv4 ? 32 : 128
        var bits = maxBits
        if let pt = prefixText {
            if let n = Int(pt) {
                bits = n
            } else if addr.isIPv4, case .v4(let mask)? = IPAddress(pt) {
                // Dotted netmask: must be contiguous ones.
                let ones = mask.nonzeroBitCount
                guard mask == (ones == 0 ? 0 : UInt32.max << (32 - UInt32(ones))) else { return nil }
                bits = ones
            } else {
                return nil
            }
        }
        guard bits >= 0, bits <= maxBits else { return nil }
        self.init(address: addr, prefix: bits)
    }

    public func contains(_ ip: IPAddress) -> Bool {
        switch (address, ip) {
        case (.v4(let net), .v4(let a)):
            if prefix == 0 { return true }
            let mask = UInt32.max << (32 - UInt32(prefix))
            return net & mask == a & mask
        case (.v6(let nh, let nl), .v6(let ah, let al)):
            if prefix == 0 { return true }
            if prefix <= 64 {
                let mask = UInt64.max << (64 - UInt64(prefix))
                return nh & mask == ah & mask
            }
            let mask = prefix == 128 ? UInt64.max : UInt64.max << (128 - UInt64(prefix))
            return nh == ah && nl & mask == al & mask
        default:
            return false
        }
    }

    public var description: String { "\(address)/\(prefix)" }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
