import Foundation
import Testing
import PolicyEngine
import SMTPProtocol
import DNSResolver
@testable import Checks

let rdnsFixtures = """
# 192.0.2.1: confirmed
1.2.0.192.in-addr.arpa. 300 IN PTR mail.example.net.
mail.example.net. 300 IN A 192.0.2.1
# 192.0.2.2: PTR that points elsewhere
2.2.0.192.in-addr.arpa. 300 IN PTR liar.example.net.
liar.example.net. 300 IN A 198.51.100.1
# 192.0.2.3: dynamic-looking, confirmed
3.2.0.192.in-addr.arpa. 300 IN PTR host-3.dyn.isp.example.
host-3.dyn.isp.example. 300 IN A 192.0.2.3
# 192.0.2.4: PTR lookup fails
4.2.0.192.in-addr.arpa. SERVFAIL
# IPv6 2001:db8::1 confirmed
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6.example.net.
v6.example.net. 300 IN AAAA 2001:db8::1
# HELO names
broken-helo.example. SERVFAIL
"""

final class RDNSWorld: @unchecked Sendable {
    let server: DNSFixtureServer
    let resolver: DNSResolver
    init() async throws {
        server = try DNSFixtureServer(fixtures: rdnsFixtures)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.timeout = 1.5
        c.attempts = 1
        resolver = DNSResolver(config: c)
    }
    func ctx(_ ip: String, helo: String? = nil, ptr: String? = nil) -> CheckContext {
        var c = CheckContext(sessionID: "t", listener: "l", clientIP: IPAddress(ip)!, clientPort: 1, clientAuthorized: false, maxMessageSize: 0)
        c.helo = helo
        c.clientPTR = ptr
        return c
    }
}

@Suite struct ReverseDNSTests {
    @Test func forwardConfirmedNames() async throws {
        let w = try await RDNSWorld()
        var o = ReverseDNSCheck.Options()
        o.patterns = [try Glob.parse("*.dyn.*").get()]
        o.dynamic = .score
        o.dynamicScore = 2
        let c = ReverseDNSCheck(options: o, resolver: w.resolver)
        let ok = await c.evaluate(stage: .connect, context: w.ctx("192.0.2.1"))
        #expect(ok.result == "pass")
        #expect(ok.clientPTR == "mail.example.net")
        #expect(ok.facts["name"] == .string("mail.example.net"))
        let liar = await c.evaluate(stage: .connect, context: w.ctx("192.0.2.2"))
        #expect(liar.result == "mismatch")
        #expect(liar.clientPTR == nil)
        #expect(liar.reason == "no PTR name of 192.0.2.2 (liar.example.net) resolves back to it")
        let none = await c.evaluate(stage: .connect, context: w.ctx("192.0.2.9"))
        #expect(none.result == "none")
        let dyn = await c.evaluate(stage: .connect, context: w.ctx("192.0.2.3"))
        #expect(dyn.result == "dynamic")
        #expect(dyn.score == 2)
        #expect(dyn.action == .continue)
        let v6 = await c.evaluate(stage: .connect, context: w.ctx("2001:db8::1"))
        #expect(v6.clientPTR == "v6.example.net")
        let fail = await c.evaluate(stage: .connect, context: w.ctx("192.0.2.4"))
        #expect(fail.result == "temperror")
        #expect(fail.backendError)
        await w.server.stop()
    }

    @Test func refusingIsAnOption() async throws {
        let w = try await RDNSWorld()
        var o = ReverseDNSCheck.Options()
        o.requireConfirmed = .reject
        let c = ReverseDNSCheck(options: o, resolver: w.resolver)
        #expect(await c.evaluate(stage: .connect, context: w.ctx("192.0.2.2")).action.reply?.summary == "550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.2]")
        #expect(await c.evaluate(stage: .connect, context: w.ctx("192.0.2.1")).action == .continue)
        await w.server.stop()
    }

    @Test func heloNamesResolveAndMatch() async throws {
        let w = try await RDNSWorld()
        var o = HeloDNSCheck.Options()
        o.requireResolves = .reject
        o.requireMatchesPTR = .score
        o.matchScore = 1.5
        let c = HeloDNSCheck(options: o, resolver: w.resolver)
        let good = await c.evaluate(stage: .helo, context: w.ctx("192.0.2.1", helo: "MAIL.example.net", ptr: "mail.example.net"))
        #expect(good.result == "pass")
        #expect(good.facts["matches_ptr"] == .bool(true))
        let other = await c.evaluate(stage: .helo, context: w.ctx("192.0.2.1", helo: "liar.example.net", ptr: "mail.example.net"))
        #expect(other.result == "mismatch")
        #expect(other.score == 1.5)
        let gone = await c.evaluate(stage: .helo, context: w.ctx("192.0.2.1", helo: "nowhere.example.net"))
        #expect(gone.action.reply?.summary == "550 5.7.1 <nowhere.example.net>: Helo command rejected: Host not found")
        let broken = await c.evaluate(stage: .helo, context: w.ctx("192.0.2.1", helo: "broken-helo.example"))
        #expect(broken.result == "temperror")
        let literal = await c.evaluate(stage: .helo, context: w.ctx("192.0.2.1", helo: "[192.0.2.1]"))
        #expect(literal.result == "skipped")
        await w.server.stop()
    }

    @Test func theVerifiedNameBecomesClientPtrForRulesAndLaterChecks() async throws {
        let w = try await RDNSWorld()
        let dir = NSTemporaryDirectory() + "mg-rdns-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "name: t\nchecks:\n  rdns: {}\n  helodns: {requireMatchesPTR: reject}\nrules: [r.rules]\n".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        try "rule known at mail when client.ptr matches \"*.example.net\" score +1\n".write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
        let p = try PolicyLoader.load(path: dir + "/p.yaml", factory: CheckCatalog(resolver: w.resolver))
        var input = SimulationInput(clientIP: IPAddress("192.0.2.1")!)
        input.helo = "mail.example.net"
        input.sender = .mailbox(Mailbox(localPart: "a", domain: "example.net"))
        input.recipients = [Mailbox(localPart: "b", domain: "localhost")]
        let r = await PolicySimulator.run(p, input)
        #expect(r.action == "accept")
        #expect(r.rulesFired == ["known"])
        #expect(r.verdicts.first { $0.check == "helodns" }?.result == "pass")
        input.helo = "liar.example.net"
        let r2 = await PolicySimulator.run(p, input)
        #expect(r2.reply?.summary == "550 5.7.1 <liar.example.net>: Helo command rejected: does not match your reverse name")
        await w.server.stop()
    }
}
