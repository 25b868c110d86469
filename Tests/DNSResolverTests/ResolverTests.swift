import Foundation
import Testing
import NIOCore
import NIOConcurrencyHelpers
import SMTPProtocol
@testable import DNSResolver

let fixtures = """
# Records
a.test. 300 IN A 192.0.2.1
a.test. 300 IN AAAA 2001:db8::1
multi.test. 300 IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"
mx.test. 300 IN MX 10 mx1.test.
mx.test. 300 IN MX 20 mx2.test.
1.2.0.192.in-addr.arpa. 300 IN PTR a.test.
alias.test. 300 IN CNAME alias2.test.
alias2.test. 300 IN CNAME a.test.
short.test. 5 IN A 192.0.2.5
nodata.test. 300 IN A 192.0.2.9
long.test. 300 IN TXT "\(String(repeating: "x", count: 250))" "\(String(repeating: "y", count: 250))" "\(String(repeating: "z", count: 250))"
test. SOA 60
broken.test. SERVFAIL
refused.test. REFUSED
silent.test. TIMEOUT
forged.test. SPOOF
forged.test. 300 IN A 192.0.2.7
"""

/// A fixture server and a resolver asking it; `clock` moves the resolver's time.
final class DNSWorld: @unchecked Sendable {
    let server: DNSFixtureServer
    let resolver: DNSResolver
    let offset = NIOLockedValueBox<Int64>(0)

    init(timeout: Double = 1.5) async throws {
        server = try DNSFixtureServer(fixtures: fixtures)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.timeout = timeout
        c.attempts = 1
        let box = offset
        resolver = DNSResolver(config: c, now: { .now() + .seconds(box.withLockedValue { $0 }) })
    }

    func advance(seconds: Int64) { offset.withLockedValue { $0 += seconds } }
    func stop() async { await server.stop() }
}

@Suite struct ResolverTests {
    @Test func recordsOfEveryType() async throws {
        let w = try await DNSWorld()
        #expect(await w.resolver.query("a.test", .a) == .records([.a(IPAddress("192.0.2.1")!)]))
        #expect(await w.resolver.query("A.TEST.", .aaaa) == .records([.aaaa(IPAddress("2001:db8::1")!)]))
        #expect(await w.resolver.query("multi.test", .txt) == .records([.txt("v=spf1 ip4:192.0.2.0/24 -all")]))
        #expect(await w.resolver.query("mx.test", .mx) == .records([.mx(preference: 10, exchange: "mx1.test"), .mx(preference: 20, exchange: "mx2.test")]))
        #expect(await w.resolver.query("1.2.0.192.in-addr.arpa", .ptr) == .records([.ptr("a.test")]))
        #expect(await w.resolver.addresses("a.test") == .records([.a(IPAddress("192.0.2.1")!), .aaaa(IPAddress("2001:db8::1")!)]))
        await w.stop()
    }

    @Test func cnameChainsAreFollowed() async throws {
        let w = try await DNSWorld()
        #expect(await w.resolver.query("alias.test", .a) == .records([.a(IPAddress("192.0.2.1")!)]))
        #expect(await w.resolver.query("alias.test", .cname) == .records([.cname("alias2.test")]))
        await w.stop()
    }

    @Test func negativeAnswersAreToldApart() async throws {
        let w = try await DNSWorld()
        #expect(await w.resolver.query("nowhere.test", .a) == .nxdomain)
        #expect(await w.resolver.query("nodata.test", .txt) == .noData)
        #expect(await w.resolver.query("broken.test", .a) == .tempFail("SERVFAIL"))
        #expect(await w.resolver.query("refused.test", .a) == .tempFail("REFUSED"))
        let start = ContinuousClock.now
        #expect(await w.resolver.query("silent.test", .a) == .tempFail("timeout from 127.0.0.1:\(w.server.port)"))
        #expect(ContinuousClock.now - start < .seconds(5))
        await w.stop()
    }

    @Test func truncatedAnswersAreAskedAgainOverTCP() async throws {
        let w = try await DNSWorld()
        let r = await w.resolver.query("long.test", .txt)
        #expect(r == .records([.txt(String(repeating: "x", count: 250) + String(repeating: "y", count: 250) + String(repeating: "z", count: 250))]))
        await w.stop()
    }

    @Test func forgedRepliesWithAWrongIDAreIgnored() async throws {
        let w = try await DNSWorld()
        #expect(await w.resolver.query("forged.test", .a) == .records([.a(IPAddress("192.0.2.7")!)]))
        await w.stop()
    }

    @Test func answersAreCachedForTheirTTL() async throws {
        let w = try await DNSWorld()
        _ = await w.resolver.query("short.test", .a)
        _ = await w.resolver.query("short.test", .a)
        #expect(w.server.queries == ["short.test A"])
        w.advance(seconds: 6)
        _ = await w.resolver.query("short.test", .a)
        #expect(w.server.queries == ["short.test A", "short.test A"])
        #expect(w.resolver.statistics.cacheHits == 1)
        await w.stop()
    }

    @Test func negativeAnswersAreCachedWithTheSOATTL() async throws {
        let w = try await DNSWorld()
        #expect(await w.resolver.query("gone.test", .a) == .nxdomain)
        w.advance(seconds: 59)
        #expect(await w.resolver.query("gone.test", .a) == .nxdomain)
        #expect(w.server.queries == ["gone.test A"])
        w.advance(seconds: 2)
        #expect(await w.resolver.query("gone.test", .a) == .nxdomain)
        #expect(w.server.queries.count == 2)
        // Temporary failures are never cached.
        _ = await w.resolver.query("broken.test", .a)
        _ = await w.resolver.query("broken.test", .a)
        #expect(w.server.queries.filter { $0 == "broken.test A" }.count == 2)
        await w.stop()
    }

    @Test func identicalQuestionsInFlightAreAskedOnce() async throws {
        let w = try await DNSWorld()
        let results = await withTaskGroup(of: DNSAnswer.self) { g in
            for _ in 0..<20 { g.addTask { await w.resolver.query("multi.test", .txt) } }
            var out: [DNSAnswer] = []
            for await r in g { out.append(r) }
            return out
        }
        #expect(results.count == 20)
        #expect(Set(results.map(\.description)).count == 1)
        #expect(w.server.queries == ["multi.test TXT"])
        await w.stop()
    }

    /// A name that cannot exist is never asked and never a temporary error (which would
    /// tempfail the mail forever): it does not exist.
    @Test func invalidNamesDoNotExistAndAreNeverAsked() async throws {
        let w = try await DNSWorld()
        #expect(await w.resolver.query("bad..name", .a) == .nxdomain)
        #expect(await w.resolver.query(String(repeating: "a", count: 64) + ".test", .a) == .nxdomain)
        #expect(await w.resolver.query(Array(repeating: "abcdefghi", count: 26).joined(separator: "."), .txt) == .nxdomain)
        #expect(w.server.queries.isEmpty)
        await w.stop()
    }

    @Test func aDeadServerIsSkippedForTheNext() async throws {
        let w = try await DNSWorld()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:9")!, NameServer("127.0.0.1:\(w.server.port)")!])
        c.timeout = 1.5
        let r = DNSResolver(config: c)
        #expect(await r.query("a.test", .a) == .records([.a(IPAddress("192.0.2.1")!)]))
        await w.stop()
    }

    @Test func reversedNamesPerRFC5782() {
        #expect(DNSResolver.reversedName(IPAddress("192.0.2.99")!, zone: "bl.example") == "99.2.0.192.bl.example")
        #expect(DNSResolver.reversedName(IPAddress("2001:db8:1:2:3:4:567:89ab")!, zone: "bl.example")
                == "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example")
    }

    @Test func nameServersParse() {
        #expect(NameServer("127.0.0.1:5353")?.description == "127.0.0.1:5353")
        #expect(NameServer("[::1]:53")?.description == "[::1]:53")
        #expect(NameServer("192.0.2.1")?.port == 53)
        #expect(NameServer("nonsense") == nil)
        let path = NSTemporaryDirectory() + "resolv-" + UUID().uuidString
        try? "# comment\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions ndots:1\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(NameServer.fromResolvConf(path).map(\.description) == ["192.0.2.53:53", "[fe80::1]:53"])
    }
}

/// The observer (the gateway's DNS metrics) hears each resolution that went to a server.
@Suite struct ResolverObserverTests {
    final class Seen: @unchecked Sendable {
        let lock = NSLock()
        var results: [String] = []
        func add(_ r: String) { lock.withLock { results.append(r) } }
    }

    @Test func resolutionsAreObservedAndCacheHitsAreNot() async throws {
        let server = try DNSFixtureServer(fixtures: "a.test. 300 IN A 192.0.2.1\n")
        try await server.start()
        let seen = Seen()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.attempts = 1
        c.observer = { seconds, result in
            precondition(seconds >= 0 && seconds < 10)
            seen.add(result)
        }
        let r = DNSResolver(config: c)
        _ = await r.query("a.test", .a)
        _ = await r.query("a.test", .a)
        _ = await r.query("missing.test", .a)
        #expect(seen.results == ["records", "nxdomain"])
        await server.stop()
    }
}

