import Foundation
import Testing
import PolicyEngine
import SMTPProtocol
import DNSResolver
@testable import Checks

let dnsblFixtures = """
# RFC 5782 test points of every healthy zone
2.0.0.127.bl.test. 300 IN A 127.0.0.2
2.0.0.127.bl.test. 300 IN TXT "test point"
2.0.0.127.mask.test. 300 IN A 127.0.0.2
2.0.0.127.wl.test. 300 IN A 127.0.0.2
# listed: 192.0.2.1 (sbl) with a reason in two strings
1.2.0.192.bl.test. 300 IN A 127.0.0.2
1.2.0.192.bl.test. 300 IN TXT "Listed in SBL, " "see https://bl.test/q?192.0.2.1"
# 192.0.2.2 answers 127.0.0.10, a code the zone does not count
2.2.0.192.bl.test. 300 IN A 127.0.0.10
# bitmask zone: 192.0.2.3 → bit 2 (4) set; 192.0.2.4 → only bit 3 (8)
3.2.0.192.mask.test. 300 IN A 127.0.0.4
4.2.0.192.mask.test. 300 IN A 127.0.0.8
# over quota and outside 127/8
5.2.0.192.bl.test. 300 IN A 127.255.255.254
6.2.0.192.bl.test. 300 IN A 192.0.2.66
# failures
7.2.0.192.bl.test. SERVFAIL
8.2.0.192.bl.test. TIMEOUT
# IPv6 2001:db8::1
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test. 300 IN A 127.0.0.2
# allowlist zone lists 192.0.2.9; it is also on the blocklist
9.2.0.192.wl.test. 300 IN A 127.0.10.2
9.2.0.192.bl.test. 300 IN A 127.0.0.2
# a broken zone that lists everything, and one that lists nothing
*.all.test. 300 IN A 127.0.0.2
bl.test. SOA 60
"""

final class DNSBLWorld: @unchecked Sendable {
    let server: DNSFixtureServer
    let resolver: DNSResolver
    init() async throws {
        server = try DNSFixtureServer(fixtures: dnsblFixtures)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.timeout = 1.5
        c.attempts = 1
        resolver = DNSResolver(config: c)
    }

    func check(_ zones: [DNSBLCheck.Zone], timeout: Double = 4, health: ZoneHealth = ZoneHealth(),
               configure: (inout DNSBLCheck.Options) -> Void = { _ in }) -> DNSBLCheck {
        var o = DNSBLCheck.Options()
        o.zones = zones
        o.timeout = timeout
        configure(&o)
        return DNSBLCheck(options: o, resolver: resolver, health: health)
    }

    func run(_ c: DNSBLCheck, _ ip: String, authorized: Bool = false) async -> CheckResult {
        let ctx = CheckContext(sessionID: "t", listener: "l", clientIP: IPAddress(ip)!, clientPort: 1, clientAuthorized: authorized, maxMessageSize: 0)
        return await c.evaluate(stage: .connect, context: ctx)
    }
}

func zone(_ name: String, _ configure: (inout DNSBLCheck.Zone) -> Void = { _ in }) -> DNSBLCheck.Zone {
    var z = DNSBLCheck.Zone(zone: name)
    configure(&z)
    return z
}

@Suite struct DNSBLTests {
    @Test func aListedClientIsRefusedWithTheZoneAndItsReason() async throws {
        let w = try await DNSBLWorld()
        let r = await w.run(w.check([zone("bl.test")]), "192.0.2.1")
        #expect(r.result == "listed")
        #expect(r.action == .reject(SMTPReply(554, "5.7.1", "Service unavailable; client [192.0.2.1] blocked using bl.test; Listed in SBL, see https://bl.test/q?192.0.2.1")))
        #expect(r.reason == "bl.test lists 192.0.2.1 (127.0.0.2): Listed in SBL, see https://bl.test/q?192.0.2.1")
        #expect(r.facts["listed"] == .keyed(["bl.test": .bool(true)]))
        #expect(r.facts["zones"] == .strings(["bl.test"]))
        await w.server.stop()
    }

    @Test func rfc5782TestPoints() async throws {
        let w = try await DNSBLWorld()
        let c = w.check([zone("bl.test")])
        #expect(await c.query(c.options.zones[0], IPAddress("127.0.0.2")!) == .listed(label: "127.0.0.2", txt: "test point"))
        #expect(await c.query(c.options.zones[0], IPAddress("127.0.0.1")!) == .notListed)
        await w.server.stop()
    }

    @Test func onlyTheAnswersAZoneCountsAreListings() async throws {
        let w = try await DNSBLWorld()
        let exact = w.check([zone("bl.test") { $0.answers = [IPAddress("127.0.0.2")!: "sbl"] }])
        #expect(await w.run(exact, "192.0.2.1").facts["answer"] == .keyed(["bl.test": .string("sbl")]))
        #expect(await w.run(exact, "192.0.2.2").result == "pass")
        let mask = w.check([zone("mask.test") { $0.bitmask = 0x04 }])
        #expect(await w.run(mask, "192.0.2.3").result == "listed")
        #expect(await w.run(mask, "192.0.2.4").result == "pass")
        await w.server.stop()
    }

    @Test func overQuotaAndOutsideAnswersAreErrorsNotListings() async throws {
        let w = try await DNSBLWorld()
        let c = w.check([zone("bl.test")])
        let q = await w.run(c, "192.0.2.5")
        #expect(q.result == "temperror")
        #expect(q.backendError)
        #expect(q.action == .continue)
        #expect(q.reason == "bl.test: answer 127.255.255.254: query refused or over quota")
        let o = await w.run(c, "192.0.2.6")
        #expect(o.reason == "bl.test: answer 192.0.2.66 is outside 127.0.0.0/8")
        await w.server.stop()
    }

    @Test func servfailAndTimeoutAreTemporaryErrorsUnderOneDeadline() async throws {
        let w = try await DNSBLWorld()
        let c = w.check([zone("bl.test"), zone("mask.test")], timeout: 4)
        let s = await w.run(c, "192.0.2.7")
        #expect(s.result == "temperror")
        #expect(s.reason == "bl.test: SERVFAIL")
        #expect(s.facts["errors"] == .strings(["bl.test"]))
        let start = ContinuousClock.now
        let t = await w.run(c, "192.0.2.8")
        #expect(ContinuousClock.now - start < .seconds(8))
        #expect(t.result == "temperror")
        #expect(t.reason?.hasPrefix("bl.test: timeout from 127.0.0.1:") == true, "\(t.reason ?? "")")
        await w.server.stop()
    }

    @Test func ipv6ClientsUseReversedNibbles() async throws {
        let w = try await DNSBLWorld()
        #expect(await w.run(w.check([zone("bl.test")]), "2001:db8::1").result == "listed")
        #expect(await w.run(w.check([zone("bl.test") { $0.ipv6 = false }]), "2001:db8::1").result == "pass")
        await w.server.stop()
    }

    @Test func allowListsWin() async throws {
        let w = try await DNSBLWorld()
        let c = w.check([zone("wl.test") { $0.kind = .allow }, zone("bl.test")])
        let r = await w.run(c, "192.0.2.9")
        #expect(r.result == "allowed")
        #expect(r.action == .accept)
        #expect(r.facts["allowed"] == .bool(true))
        let local = w.check([zone("bl.test")]) { $0.allow = [IPNetwork("192.0.2.0/28")!] }
        let l = await w.run(local, "192.0.2.1")
        #expect(l.action == .accept)
        #expect(w.server.queries.filter { $0.hasPrefix("1.2.0.192") }.isEmpty)
        await w.server.stop()
    }

    @Test func scoresHiddenNamesAndAuthorizedClients() async throws {
        let w = try await DNSBLWorld()
        let scored = w.check([zone("bl.test") { $0.effect = .score; $0.score = 3.5 }])
        let s = await w.run(scored, "192.0.2.1")
        #expect(s.action == .continue)
        #expect(s.score == 3.5)
        let hidden = w.check([zone("bl.test") { $0.displayName = "our private list" }])
        #expect(await w.run(hidden, "192.0.2.1").action.reply?.summary == "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using our private list; Listed in SBL, see https://bl.test/q?192.0.2.1")
        #expect(await w.run(hidden, "192.0.2.1", authorized: true).result == "skipped")
        await w.server.stop()
    }

    @Test func selfTestsDisableAndReenableZones() async throws {
        let w = try await DNSBLWorld()
        let health = ZoneHealth()
        let c = w.check([zone("bl.test"), zone("all.test"), zone("none.test")], health: health)
        let reports = await c.selfTest()
        #expect(reports == [
            SelfTestReport(check: "dnsbl", subject: "all.test", state: "disabled", reason: "lists the test point 127.0.0.1 (it would list everyone)"),
            SelfTestReport(check: "dnsbl", subject: "none.test", state: "disabled", reason: "does not list the test point 127.0.0.2"),
        ])
        #expect(await c.selfTest() == [])
        // A disabled zone is not asked and lists nobody.
        w.server.resetQueries()
        let r = await w.run(c, "192.0.2.10")
        #expect(r.reason == "all.test skipped: disabled (lists the test point 127.0.0.1 (it would list everyone)); none.test skipped: disabled (does not list the test point 127.0.0.2)")
        #expect(w.server.queries == ["10.2.0.192.bl.test A"])
        // all.test is repaired: it is enabled again.
        try w.server.load(dnsblFixtures.replacingOccurrences(of: "*.all.test. 300 IN A 127.0.0.2", with: "2.0.0.127.all.test. 300 IN A 127.0.0.2"))
        w.resolver.clearCache()
        #expect(await c.selfTest() == [SelfTestReport(check: "dnsbl", subject: "all.test", state: "enabled", reason: "answers its test points correctly again")])
        await w.server.stop()
    }

    @Test func theCatalogReadsDNSBLSettingsWithPlaces() throws {
        let dir = NSTemporaryDirectory() + "mg-dnsbl-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try """
        name: t
        checks:
          dnsbl:
            timeout: 3
            zones:
              - bl.test
              - {zone: mask.test, bitmask: 0x04, action: score, score: 2}
              - {zone: wl.test, type: allow}
              - {zone: bad, type: maybe}
        """.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        do {
            _ = try PolicyLoader.load(path: dir + "/p.yaml", factory: CheckCatalog())
            Issue.record("compiled")
        } catch let e as PolicyErrors {
            #expect(e.diagnostics.map { $0.description.replacingOccurrences(of: dir + "/", with: "") } == [
                "p.yaml:9:27: 'type' must be block or allow",
            ])
        }
        try String(contentsOfFile: dir + "/p.yaml", encoding: .utf8).replacingOccurrences(of: "      - {zone: bad, type: maybe}", with: "")
            .write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let p = try PolicyLoader.load(path: dir + "/p.yaml", factory: CheckCatalog())
        let c = try #require(p.checks.first?.check as? DNSBLCheck)
        #expect(c.options.zones.map(\.zone) == ["bl.test", "mask.test", "wl.test"])
        #expect(c.options.zones[1].bitmask == 4)
        #expect(c.options.zones[2].kind == .allow)
        #expect(p.checks.first?.onError == .pass)
    }
}

/// A zone that lists IPv6 addresses only is self-tested with the RFC 5782 §5 IPv6 test
/// points, not disabled for not listing 127.0.0.2.
@Suite struct DNSBLIPv6SelfTestTests {
    @Test func anIPv6OnlyZoneIsTestedWithIPv6TestPoints() async throws {
        let server = try DNSFixtureServer(fixtures: """
        2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.v6.test. 300 IN A 127.0.0.2
        v6.test. SOA 60
        """)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.attempts = 1
        var o = DNSBLCheck.Options()
        var z = DNSBLCheck.Zone(zone: "v6.test")
        z.ipv4 = false
        o.zones = [z]
        let check = DNSBLCheck(options: o, resolver: DNSResolver(config: c), health: ZoneHealth())
        #expect(await check.selfTest() == [])
        #expect(server.queries.contains("2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.v6.test A"))
        #expect(!server.queries.contains { $0.hasPrefix("2.0.0.127.") })
        await server.stop()
    }
}
