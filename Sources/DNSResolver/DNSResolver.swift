/// DNSResolver: the project's asynchronous DNS stub resolver.
///
/// This module owns every DNS question the gateway asks (DNSBL, SPF, DKIM keys, HELO and
/// reverse-name checks). Queries go over UDP from a fresh socket (a random source port) with
/// a random ID, fall back to TCP when the answer is truncated, and are retried across the
/// configured nameservers; a reply counts only if its source, ID and question match the
/// query. libldns does the wire format only, never the transport. Answers are cached within
/// their TTL (negative ones per RFC 2308), identical questions in flight are asked once, and
/// every answer says which it is: records, NXDOMAIN, no data, or a temporary failure.
import CLDNS
import Foundation
import NIOCore
import NIOPosix
import NIOConcurrencyHelpers
import SMTPProtocol

public enum LDNSLibrary {
    /// The version string of the linked libldns, e.g. "1.8.3".
    public static var version: String { String(cString: ldns_version()) }
}

/// What a question came to. Checks must tell these apart.
public enum DNSAnswer: Sendable, Equatable, CustomStringConvertible {
    /// `records`, `nxdomain`, `nodata` or `tempfail`.
    public var resultName: String {
        switch self {
        case .records: return "records"
        case .nxdomain: return "nxdomain"
        case .noData: return "nodata"
        case .tempFail: return "tempfail"
        }
    }

    /// Records of the type asked, at the end of any CNAME chain.
    case records([DNSRecord])
    case nxdomain
    /// The name exists but has no records of this type.
    case noData
    /// SERVFAIL, REFUSED, a timeout, a malformed answer: ask again later.
    case tempFail(String)

    public var records: [DNSRecord] { if case .records(let r) = self { return r } else { return [] } }
    public var isTempFail: Bool { if case .tempFail = self { return true } else { return false } }

    public var description: String {
        switch self {
        case .records(let r): return r.map(\.description).joined(separator: ", ")
        case .nxdomain: return "NXDOMAIN"
        case .noData: return "no data"
        case .tempFail(let why): return "temporary failure (\(why))"
        }
    }
}

/// A nameserver: an address and a port.
public struct NameServer: Sendable, Equatable, CustomStringConvertible {
    public var address: IPAddress
    public var port: Int
    public init(address: IPAddress, port: Int = 53) { self.address = address; self.port = port }

    /// `127.0.0.1`, `127.0.0.1:5353`, `[::1]:53`, `::1`.
    public init?(_ s: String) {
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            guard let ip = IPAddress(s[s.index(after: s.startIndex)..<close]) else { return nil }
            let rest = s[s.index(after: close)...]
            if rest.isEmpty { self.init(address: ip); return }
            guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return nil }
            self.init(address: ip, port: p)
            return
        }
        if let ip = IPAddress(s) { self.init(address: ip); return }
        guard let colon = s.lastIndex(of: ":"), let ip = IPAddress(s[..<colon]), ip.isIPv4,
              let p = Int(s[s.index(after: colon)...]), (1...65535).contains(p) else { return nil }
        self.init(address: ip, port: p)
    }

    public var description: String { address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }

    var socketAddress: SocketAddress? { try? SocketAddress(ipAddress: address.description, port: port) }

    /// The nameservers of /etc/resolv.conf (127.0.0.1 when there are none).
    public static func fromResolvConf(_ path: String = "/etc/resolv.conf") -> [NameServer] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let servers = text.split(separator: "\n").compactMap { line -> NameServer? in
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, parts[0] == "nameserver" else { return nil }
            var addr = String(parts[1])
            if let pct = addr.firstIndex(of: "%") { addr = String(addr[..<pct]) }
            return IPAddress(addr).map { NameServer(address: $0) }
        }
        return servers.isEmpty ? [NameServer(address: .v4(0x7f00_0001))] : servers
    }
}

/// The resolver's settings.
public struct ResolverConfig: Sendable {
    public var servers: [NameServer]
    /// Seconds to wait for one answer over UDP (and for a TCP exchange).
    public var timeout: Double = 2
    /// Rounds over the servers: each round asks each server once.
    public var attempts = 2
    /// Questions sent to servers at once, over all sessions; past it a question fails at
    /// once as a local failure (each costs a descriptor).
    public var maxInFlight = 512
    /// Entries kept in the cache; 0 turns the cache off.
    public var cacheSize = 10_000
    /// Upper bound on any TTL honoured, seconds.
    public var maxTTL = 86_400
    /// Upper bound on negative caching, seconds (RFC 2308 suggests hours; DNSBLs change fast).
    public var maxNegativeTTL = 900
    /// Told each resolution that went to the servers (not the cache): seconds taken and
    /// `records`, `nxdomain`, `nodata` or `tempfail` (the gateway's metrics).
    public var observer: (@Sendable (_ seconds: Double, _ result: String) -> Void)?
    public init(servers: [NameServer]) { self.servers = servers }
}

/// The asynchronous stub resolver. Safe to share between sessions.
public final class DNSResolver: Sendable {
    public let config: ResolverConfig
    let group: EventLoopGroup
    let now: @Sendable () -> NIODeadline

    struct Key: Hashable { var name: String; var type: UInt16 }
    struct CacheEntry { var answer: DNSAnswer; var expires: NIODeadline }

    private let cache = NIOLockedValueBox<[Key: CacheEntry]>([:])
    private let inflight = NIOLockedValueBox<[Key: EventLoopFuture<DNSAnswer>]>([:])
    private let counters = NIOLockedValueBox<(sent: Int, cacheHits: Int, coalesced: Int)>((0, 0, 0))
    private let sending = NIOLockedValueBox(0)

    /// Failures of this process rather than of DNS (descriptors exhausted, too many queries
    /// in flight), counted over all resolvers. The policy run reads it: a check that failed
    /// while it grew is tempfailed, never passed, whatever its onError says.
    public static var localFailures: Int { localFailureCount.withLockedValue { $0 } }
    private static let localFailureCount = NIOLockedValueBox(0)

    static func localFailure(_ why: String) -> String {
        localFailureCount.withLockedValue { $0 += 1 }
        return "local resource failure: \(why)"
    }

    /// `now` is injectable so that tests can move time to expire cache entries.
    public init(config: ResolverConfig, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                now: @escaping @Sendable () -> NIODeadline = { .now() }) {
        self.config = config
        self.group = group
        self.now = now
    }

    public convenience init(servers: [NameServer], timeout: Double = 2) {
        var c = ResolverConfig(servers: servers)
        c.timeout = timeout
        self.init(config: c)
    }

    /// Queries sent to a server, answers served from the cache, and questions that joined one
    /// already in flight.
    public var statistics: (sent: Int, cacheHits: Int, coalesced: Int) { counters.withLockedValue { $0 } }

    public func clearCache() { cache.withLockedValue { $0 = [:] } }

    /// Asks one question; never throws: failures are `.tempFail`.
    public func query(_ name: String, _ type: DNSType) async -> DNSAnswer {
        // A-labels and libldns' presentation form: what is asked is what answers name.
        guard let asked = DNSName.asked(name) else { return .nxdomain }
        let key = Key(name: asked, type: type.rawValue)
        let t = now()
        if let hit = cache.withLockedValue({ c -> DNSAnswer? in
            guard let e = c[key] else { return nil }
            if e.expires > t { return e.answer }
            c[key] = nil
            return nil
        }) {
            counters.withLockedValue { $0.cacheHits += 1 }
            return hit
        }
        let loop = group.next()
        let (future, joined): (EventLoopFuture<DNSAnswer>, Bool) = inflight.withLockedValue { m in
            if let f = m[key] { return (f, true) }
            let p = loop.makePromise(of: DNSAnswer.self)
            m[key] = p.futureResult
            Task {
                let began = ContinuousClock.now
                let answer = await self.resolve(key, type: type)
                self.config.observer?((ContinuousClock.now - began).inSeconds, answer.resultName)
                p.succeed(answer)
            }
            return (p.futureResult, false)
        }
        if joined { counters.withLockedValue { $0.coalesced += 1 } }
        let answer = (try? await future.get()) ?? .tempFail("internal error")
        if !joined { inflight.withLockedValue { _ = $0.removeValue(forKey: key) } }
        return answer
    }

    /// Addresses of a name: A and AAAA, asked in parallel. Temporary failure only when
    /// neither gave records and one failed.
    public func addresses(_ name: String) async -> DNSAnswer {
        async let a = query(name, .a)
        async let aaaa = query(name, .aaaa)
        let (x, y) = await (a, aaaa)
        let recs = x.records + y.records
        if !recs.isEmpty { return .records(recs) }
        if x.isTempFail { return x }
        if y.isTempFail { return y }
        if x == .nxdomain || y == .nxdomain { return .nxdomain }
        return .noData
    }

    // MARK: Resolution

    /// Follows CNAMEs (up to 8) and caches the result.
    private func resolve(_ key: Key, type: DNSType) async -> DNSAnswer {
        var name = key.name
        var chainTTL = config.maxTTL
        for _ in 0..<8 {
            let (msg, failure) = await exchange(name, type)
            guard let msg else { return .tempFail(failure) }
            switch msg.rcode {
            case DNSWire.noError, DNSWire.nxDomain: break
            case DNSWire.servFail: return .tempFail("SERVFAIL")
            case DNSWire.refused: return .tempFail("REFUSED")
            default: return .tempFail("rcode \(msg.rcode)")
            }
            // Walk the chain inside the answer.
            var owner = name
            var seen = Set<String>()
            while type != .cname, seen.insert(owner).inserted,
                  let c = msg.answers.first(where: { $0.name == owner && $0.type == DNSType.cname.rawValue }),
                  case .cname(let target)? = c.record {
                chainTTL = min(chainTTL, c.ttl)
                owner = target
            }
            let recs = msg.answers.filter { $0.name == owner && $0.type == type.rawValue && $0.record != nil }
            if !recs.isEmpty {
                let ttl = min(chainTTL, recs.map(\.ttl).min() ?? 0, config.maxTTL)
                let ans = DNSAnswer.records(recs.compactMap(\.record))
                store(key, ans, ttl: ttl)
                return ans
            }
            if owner != name && msg.rcode == DNSWire.noError && type != .cname {
                // The answer stopped at a CNAME target: ask for it.
                name = owner
                continue
            }
            let negative: DNSAnswer = msg.rcode == DNSWire.nxDomain ? .nxdomain : .noData
            // RFC 2308 §5: the SOA's TTL, bounded by its MINIMUM field.
            let soaTTL = msg.authority.compactMap { r -> Int? in
                if case .soa(let minimum)? = r.record { return min(r.ttl, minimum) }
                return nil
            }.min()
            if let t = soaTTL { store(key, negative, ttl: min(t, config.maxNegativeTTL, chainTTL)) }
            return negative
        }
        return .tempFail("CNAME chain too long")
    }

    private func store(_ key: Key, _ answer: DNSAnswer, ttl: Int) {
        guard ttl > 0, config.cacheSize > 0 else { return }
        let expires = now() + .seconds(Int64(ttl))
        cache.withLockedValue { c in
            if c.count >= config.cacheSize {
                let t = now()
                c = c.filter { $0.value.expires > t }
                // Still full: drop an arbitrary tenth.
                if c.count >= config.cacheSize { for k in c.keys.prefix(max(1, config.cacheSize / 10)) { c[k] = nil } }
            }
            c[key] = CacheEntry(answer: answer, expires: expires)
        }
    }

    /// One question to the servers, with retries; the message, or why there is none.
    private func exchange(_ name: String, _ type: DNSType) async -> (DNSMessage?, String) {
        let admitted = sending.withLockedValue { n -> Bool in
            guard n < config.maxInFlight else { return false }
            n += 1
            return true
        }
        guard admitted else { return (nil, DNSResolver.localFailure("more than \(config.maxInFlight) DNS queries in flight")) }
        defer { sending.withLockedValue { $0 -= 1 } }
        var lastError = "no nameservers"
        for _ in 0..<max(1, config.attempts) {
            for server in config.servers {
                let id = UInt16.random(in: 0...UInt16.max)
                guard let q = DNSWire.query(name: name, type: type, id: id) else { return (nil, "invalid name") }
                guard let addr = server.socketAddress else { lastError = "bad server address"; continue }
                counters.withLockedValue { $0.sent += 1 }
                do {
                    var msg = try await udpExchange(q, id: id, name: name, type: type, to: addr)
                    if msg.truncated {
                        msg = try await tcpExchange(q, id: id, name: name, type: type, to: addr)
                    }
                    return (msg, "")
                } catch let e as DNSTransportError {
                    lastError = "\(e.reason) from \(server)"
                } catch let e as IOError where e.errnoCode == EMFILE || e.errnoCode == ENFILE {
                    return (nil, DNSResolver.localFailure("\(e)"))
                } catch {
                    lastError = "\(error) from \(server)"
                }
            }
        }
        return (nil, lastError)
    }

    func matches(_ m: DNSMessage, id: UInt16, name: String, type: DNSType) -> Bool {
        m.isResponse && m.id == id && m.questionName == canonicalName(name) && m.questionType == type.rawValue
    }

    private func udpExchange(_ query: [UInt8], id: UInt16, name: String, type: DNSType, to server: SocketAddress) async throws -> DNSMessage {
        let loop = group.next()
        let promise = loop.makePromise(of: DNSMessage.self)
        let handler = UDPReplyHandler(server: server, promise: promise) { [self] m in matches(m, id: id, name: name, type: type) }
        let bindHost = server.protocol == .inet6 ? "::" : "0.0.0.0"
        let channel = try await DatagramBootstrap(group: loop)
            .channelInitializer { $0.pipeline.addHandler(handler) }
            .bind(host: bindHost, port: 0).get()
        let timeout = loop.scheduleTask(in: .milliseconds(Int64(config.timeout * 1000))) {
            promise.fail(DNSTransportError(reason: "timeout"))
        }
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: query)), promise: nil)
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    private func tcpExchange(_ query: [UInt8], id: UInt16, name: String, type: DNSType, to server: SocketAddress) async throws -> DNSMessage {
        let loop = group.next()
        let promise = loop.makePromise(of: DNSMessage.self)
        let handler = TCPReplyHandler(promise: promise) { [self] m in matches(m, id: id, name: name, type: type) }
        let timeout = loop.scheduleTask(in: .milliseconds(Int64(config.timeout * 1000))) {
            promise.fail(DNSTransportError(reason: "timeout over TCP"))
        }
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.milliseconds(Int64(config.timeout * 1000)))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSLengthFramer()))
                        try ch.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(to: server).get()
        } catch {
            timeout.cancel()
            promise.fail(error)
            throw DNSTransportError(reason: "TCP connect failed")
        }
        var out = ByteBuffer()
        out.writeInteger(UInt16(query.count))
        out.writeBytes(query)
        channel.writeAndFlush(out, promise: nil)
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }
}

struct DNSTransportError: Error { var reason: String }

/// Takes the first datagram from the server that matches the query; ignores the rest
/// (spoofed or stray answers).
final class UDPReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let server: SocketAddress
    let promise: EventLoopPromise<DNSMessage>
    let accept: (DNSMessage) -> Bool
    var done = false

    init(server: SocketAddress, promise: EventLoopPromise<DNSMessage>, accept: @escaping (DNSMessage) -> Bool) {
        self.server = server
        self.promise = promise
        self.accept = accept
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = unwrapInboundIn(data)
        guard !done, env.remoteAddress == server, let m = DNSWire.parse(Array(env.data.readableBytesView)), accept(m) else { return }
        done = true
        promise.succeed(m)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if !done { done = true; promise.fail(DNSTransportError(reason: "closed")) }
    }
}

final class TCPReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<DNSMessage>
    let accept: (DNSMessage) -> Bool
    var done = false

    init(promise: EventLoopPromise<DNSMessage>, accept: @escaping (DNSMessage) -> Bool) {
        self.promise = promise
        self.accept = accept
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let b = unwrapInboundIn(data)
        guard !done else { return }
        done = true
        if let m = DNSWire.parse(Array(b.readableBytesView)), accept(m) {
            promise.succeed(m)
        } else {
            promise.fail(DNSTransportError(reason: "mismatched answer over TCP"))
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { done = true; promise.fail(DNSTransportError(reason: "TCP connection closed")) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !done { done = true; promise.fail(error) }
        context.close(promise: nil)
    }
}

extension DNSResolver {
    /// The DNSBL query name of an address (RFC 5782 §2.1, §2.4): reversed octets, or
    /// reversed nibbles for IPv6, followed by the zone.
    public static func reversedName(_ ip: IPAddress, zone: String) -> String {
        switch ip {
        case .v4(let v):
            return "\(v & 0xff).\((v >> 8) & 0xff).\((v >> 16) & 0xff).\(v >> 24).\(zone)"
        case .v6:
            let hex = Array("0123456789abcdef")
            let bytes = ip.bytes
            var nibbles: [Character] = []
            for b in bytes.reversed() {
                nibbles.append(hex[Int(b & 0xf)])
                nibbles.append(hex[Int(b >> 4)])
            }
            return nibbles.map(String.init).joined(separator: ".") + "." + zone
        }
    }
}
