import Foundation
import NIOCore
import NIOPosix
import NIOConcurrencyHelpers

/// A small authoritative DNS server on loopback that answers from fixtures: what the tests,
/// `policy simulate --dns` and the benchmark talk to instead of the internet.
///
/// Fixture text, one entry a line, `#` comments:
///
///     2.0.0.127.bl.test. 300 IN A 127.0.0.2          ; any record in zone-file syntax
///     2.0.0.127.bl.test. 300 IN TXT "listed" "again"
///     *.all.test. 300 IN A 127.0.0.2                 ; a wildcard for one label or more
///     broken.test. SERVFAIL                          ; answer SERVFAIL (also REFUSED)
///     silent.test. TIMEOUT                           ; never answer
///     forged.test. SPOOF                             ; first a forged reply (wrong ID, 6.6.6.6), then the real one
///     bl.test. SOA 60                                ; negative answers under bl.test carry an SOA with this TTL
///
/// Over UDP an answer longer than 512 octets is sent truncated (TC, no records), so the
/// client must retry over TCP, which the server also answers, on the same port number.
public final class DNSFixtureServer: @unchecked Sendable {
    enum Special: String { case servfail = "SERVFAIL", refused = "REFUSED", timeout = "TIMEOUT", spoof = "SPOOF" }

    struct Entry { var name: String; var type: UInt16; var line: String }

    private let lock = NIOLock()
    private var entries: [Entry] = []
    private var specials: [String: Special] = [:]
    private var soas: [String: Int] = [:]
    private var _queries: [String] = []
    private var udp: Channel?
    private var tcp: Channel?

    public var port: Int { udp?.localAddress?.port ?? 0 }
    public var address: String { "127.0.0.1:\(port)" }
    /// Every question received, as "name TYPE", in order.
    public var queries: [String] { lock.withLock { _queries } }
    public func resetQueries() { lock.withLock { _queries = [] } }

    public init(fixtures: String) throws {
        try load(fixtures)
    }

    /// Replaces the fixtures (the running server answers from the new ones at once).
    public func load(_ text: String) throws {
        var e: [Entry] = [], sp: [String: Special] = [:], so: [String: Int] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = String(raw)
            if let hash = line.firstIndex(of: "#") , !line[..<hash].contains("\"") { line = String(line[..<hash]) }
            line = line.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if parts.count == 2, let s = Special(rawValue: parts[1].uppercased()) { sp[canonicalName(parts[0])] = s; continue }
            if parts.count == 3, parts[1].uppercased() == "SOA", let ttl = Int(parts[2]) { so[canonicalName(parts[0])] = ttl; continue }
            guard DNSWire.isValidRecord(line), parts.count >= 4,
                  let typeIndex = parts.firstIndex(where: { DNSType(name: $0) != nil && $0 != parts[0] }),
                  let type = DNSType(name: parts[typeIndex]) else {
                throw FixtureError(description: "line \(n + 1): cannot parse '\(line)'")
            }
            e.append(Entry(name: canonicalName(parts[0]), type: type.rawValue, line: line))
        }
        lock.withLock { entries = e; specials = sp; soas = so }
    }

    /// Binds UDP on a free port, then TCP on the same port number; when that number is taken
    /// for TCP, tries another.
    public func start(group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        var lastError: Error?
        for _ in 0..<20 {
            let u = try await DatagramBootstrap(group: group)
                .channelInitializer { ch in ch.pipeline.addHandler(UDPHandler(server: self)) }
                .bind(host: "127.0.0.1", port: 0).get()
            do {
                tcp = try await ServerBootstrap(group: group)
                    .childChannelInitializer { ch in
                        ch.eventLoop.makeCompletedFuture {
                            try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSLengthFramer()))
                            try ch.pipeline.syncOperations.addHandler(TCPHandler(server: self))
                        }
                    }
                    .bind(host: "127.0.0.1", port: u.localAddress!.port!).get()
                udp = u
                return
            } catch {
                lastError = error
                try? await u.close()
            }
        }
        throw lastError!
    }

    public func stop() async {
        try? await udp?.close()
        try? await tcp?.close()
    }

    /// The datagrams to send for a query (none: stay silent).
    func answers(_ bytes: [UInt8], udp: Bool) -> [[UInt8]] {
        guard let real = answer(bytes, udp: udp) else { return [] }
        guard let q = DNSWire.parse(bytes), lock.withLock({ specials[q.questionName] }) == .spoof else { return [real] }
        var forged = q
        forged.id = q.id ^ 0x5a5a
        let fake = DNSWire.response(to: forged, rcode: DNSWire.noError, answers: ["\(q.questionName). 300 IN A 6.6.6.6"])
        return (fake.map { [$0] } ?? []) + [real]
    }

    /// The answer to a query, or nil to stay silent.
    func answer(_ bytes: [UInt8], udp: Bool) -> [UInt8]? {
        guard let q = DNSWire.parse(bytes), !q.isResponse else { return nil }
        let name = q.questionName
        lock.withLock { _queries.append("\(name) \(DNSType(rawValue: q.questionType)?.description ?? "TYPE\(q.questionType)")") }
        let (es, sp, so) = lock.withLock { (entries, specials, soas) }
        switch sp[name] {
        case .timeout: return nil
        case .servfail: return DNSWire.response(to: q, rcode: DNSWire.servFail, answers: [])
        case .refused: return DNSWire.response(to: q, rcode: DNSWire.refused, answers: [])
        case .spoof, nil: break
        }
        // Follow CNAMEs within the fixtures, as an authoritative server for all of them would.
        var answers: [String] = []
        var current = name
        var exists = false
        for _ in 0..<8 {
            let here = matching(current, es)
            if !here.isEmpty { exists = true }
            let direct = here.filter { $0.type == q.questionType }
            if !direct.isEmpty { answers += direct.map { line(for: $0, owner: current) }; break }
            if let c = here.first(where: { $0.type == DNSType.cname.rawValue }) {
                answers.append(line(for: c, owner: current))
                guard let target = c.line.split(separator: " ").last else { break }
                current = canonicalName(String(target))
                continue
            }
            break
        }
        var authority: [String] = []
        if answers.isEmpty, let (zone, ttl) = so.filter({ name == $0.key || name.hasSuffix("." + $0.key) }).max(by: { $0.key.count < $1.key.count }) {
            authority = ["\(zone). \(ttl) IN SOA ns.\(zone). hostmaster.\(zone). 1 3600 600 86400 \(ttl)"]
        }
        let rcode = exists || !answers.isEmpty ? DNSWire.noError : DNSWire.nxDomain
        guard let full = DNSWire.response(to: q, rcode: rcode, answers: answers, authority: authority) else {
            return DNSWire.response(to: q, rcode: DNSWire.servFail, answers: [])
        }
        if udp && full.count > 512 { return DNSWire.response(to: q, rcode: rcode, answers: [], truncated: true) }
        return full
    }

    /// Entries owned by `name`, wildcards included.
    private func matching(_ name: String, _ es: [Entry]) -> [Entry] {
        let exact = es.filter { $0.name == name }
        if !exact.isEmpty { return exact }
        return es.filter { $0.name.hasPrefix("*.") && name.hasSuffix(String($0.name.dropFirst(1))) }
    }

    private func line(for e: Entry, owner: String) -> String {
        guard e.name.hasPrefix("*.") else { return e.line }
        // Substitute the wildcard owner with the name asked.
        let rest = e.line.drop { $0 != " " }
        return owner + "." + rest
    }

    final class UDPHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let server: DNSFixtureServer
        init(server: DNSFixtureServer) { self.server = server }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let env = unwrapInboundIn(data)
            for reply in server.answers(Array(env.data.readableBytesView), udp: true) {
                context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: env.remoteAddress, data: ByteBuffer(bytes: reply))), promise: nil)
            }
        }
    }

    final class TCPHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let server: DNSFixtureServer
        init(server: DNSFixtureServer) { self.server = server }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let msg = unwrapInboundIn(data)
            guard let reply = server.answer(Array(msg.readableBytesView), udp: false) else { return }
            var out = ByteBuffer()
            out.writeInteger(UInt16(reply.count))
            out.writeBytes(reply)
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
    }
}

/// DNS over TCP: each message is preceded by its length in two octets (RFC 1035 §4.2.2).
struct DNSLengthFramer: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let len = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= Int(len) + 2 else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        guard let message = buffer.readSlice(length: Int(len)) else { return .needMoreData }
        context.fireChannelRead(NIOAny(message))
        return .continue
    }
}

/// A fixture line the server cannot read.
public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
}
