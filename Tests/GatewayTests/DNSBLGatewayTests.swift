import Foundation
import Testing
import DecisionLog
import PolicyEngine
import SMTPProtocol
import DNSResolver
@testable import Gateway

/// DNSBL in the running gateway. The test clients connect from 127.0.0.5 (127.0.0.1 and
/// 127.0.0.2 are the zones' RFC 5782 test points), so the fixtures list 5.0.0.127 and the
/// policies set `checkAuthorized: true` (127/8 is in authorizedAddresses).
@Suite struct DNSBLGatewayTests {
    static let fixtures = """
    2.0.0.127.bl.test. 300 IN A 127.0.0.2
    5.0.0.127.bl.test. 300 IN A 127.0.0.2
    5.0.0.127.bl.test. 300 IN TXT "Spam source, see https://bl.test/lookup"
    2.0.0.127.broken.test. 300 IN A 127.0.0.2
    5.0.0.127.broken.test. SERVFAIL
    *.all.test. 300 IN A 127.0.0.2
    bl.test. SOA 60
    """

    struct World {
        let dns: DNSFixtureServer
        let down: RecordingDownstream
        let gw: TestGateway
        func stop() async { await gw.stop(); down.stop(); await dns.stop() }
    }

    static func start(_ checkSettings: String, rules: String = "") async throws -> World {
        let dns = try DNSFixtureServer(fixtures: fixtures)
        try await dns.start()
        let dir = NSTemporaryDirectory() + "mg-gwdnsbl-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "name: bl\nchecks:\n  dnsbl:\n\(checkSettings)\nrules: [r.rules]\n".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        try rules.write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) {
            $0.policy = dir + "/p.yaml"
            $0.dns.servers = ["127.0.0.1:\(dns.port)"]
            $0.dns.timeout = 1.5
        }
        return World(dns: dns, down: down, gw: gw)
    }

    @Test func aListedClientGets554AtConnectAndTheLogSaysWhy() async throws {
        let w = try await Self.start("    checkAuthorized: true\n    zones: [bl.test]")
        let d = try await Client.raw(port: w.gw.port, [("EHLO x.example.org\r\n", 1)], source: "127.0.0.5")
        #expect(d.greeting == "554 5.7.1 Service unavailable; client [127.0.0.5] blocked using bl.test; Spam source, see https://bl.test/lookup")
        #expect(d.closed)
        let records = try await w.gw.records(waitingFor: "session.close")
        let v = try #require(records.first { $0["check"] as? String == "dnsbl" })
        #expect(v["stage"] as? String == "connect")
        #expect(v["result"] as? String == "listed")
        #expect(v["action"] as? String == "reject")
        #expect(v["reply"] as? String == "554 5.7.1 Service unavailable; client [127.0.0.5] blocked using bl.test; Spam source, see https://bl.test/lookup")
        #expect(v["reason"] as? String == "bl.test lists 127.0.0.5 (127.0.0.2): Spam source, see https://bl.test/lookup")
        #expect(v["policy"] as? String == "bl")
        #expect(w.down.messages.isEmpty)
        await w.stop()
    }

    @Test func deferredToRcptTheLogHoldsTheEnvelopeAndPostmasterGetsMail() async throws {
        let w = try await Self.start("    checkAuthorized: true\n    deferToRcpt: true\n    zones: [bl.test]")
        let r1 = try await Client.smtplib(port: w.gw.port, from: "a@example.net", to: ["bob@example.org"], data: "Subject: x\r\n\r\ny\r\n", source: "127.0.0.5")
        #expect(r1["ok"] as? Bool == false)
        #expect("\(r1)".contains("Service unavailable; client [127.0.0.5] blocked using bl.test"), "\(r1)")
        let r2 = try await Client.smtplib(port: w.gw.port, from: "a@example.net", to: ["postmaster@example.org"], data: "Subject: x\r\n\r\ny\r\n", source: "127.0.0.5")
        #expect(r2["ok"] as? Bool == true, "\(r2)")
        #expect(w.down.messages.map(\.rcpts) == [["postmaster@example.org"]])
        let records = try await w.gw.records(waitingFor: "session.close", count: 2)
        let given = try #require(records.first { $0["result"] as? String == "deferred" })
        #expect(given["reply"] as? String == "554 5.7.1 Service unavailable; client [127.0.0.5] blocked using bl.test; Spam source, see https://bl.test/lookup")
        #expect(given["sender"] as? String == "a@example.net")
        #expect(given["recipient"] as? String == "bob@example.org")
        #expect(given["reason"] as? String == "decided at connect by check dnsbl: bl.test lists 127.0.0.5 (127.0.0.2): Spam source, see https://bl.test/lookup")
        await w.stop()
    }

    @Test func aServfailIsNotAListingAndPassesByDefault() async throws {
        let w = try await Self.start("    checkAuthorized: true\n    zones: [broken.test]")
        let r = try await Client.smtplib(port: w.gw.port, from: "a@example.net", to: ["bob@example.org"], data: "Subject: x\r\n\r\ny\r\n", source: "127.0.0.5")
        #expect(r["ok"] as? Bool == true, "\(r)")
        let records = try await w.gw.records(waitingFor: "session.close")
        let v = try #require(records.first { $0["check"] as? String == "dnsbl" })
        #expect(v["result"] as? String == "temperror")
        #expect(v["action"] as? String == "continue")
        #expect(v["reason"] as? String == "broken.test: SERVFAIL (onError: pass)")
        await w.stop()
    }

    @Test func failingClosedTheClientHears421() async throws {
        let w = try await Self.start("    checkAuthorized: true\n    onError: tempfail\n    zones: [broken.test]")
        let d = try await Client.raw(port: w.gw.port, [("EHLO x.example.org\r\n", 1)], source: "127.0.0.5")
        #expect(d.greeting == "421 4.3.0 Temporary lookup failure, try again later")
        await w.stop()
    }

    @Test func rulesReadTheZonesThatList() async throws {
        let w = try await Self.start("    checkAuthorized: true\n    zones: [{zone: bl.test, action: none}]",
                                     rules: "rule bl-reject-later at rcpt when dnsbl.listed(\"bl.test\") and recipient.local != \"postmaster\" reject 550 5.7.1 \"Listed: {dnsbl.result}\"\n")
        let d = try await Client.raw(port: w.gw.port, [("EHLO x.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\n", 3)], source: "127.0.0.5")
        #expect(d.replies.first?.last == "550 5.7.1 Listed: listed")
        await w.stop()
    }

    @Test func aZoneThatListsEveryoneIsDisabledAtStartAndSaysSoInTheLog() async throws {
        let w = try await Self.start("    checkAuthorized: true\n    zones: [bl.test, all.test]")
        let records = try await w.gw.records(waitingFor: "dnsbl.zone")
        let z = try #require(records.first { $0["event"] as? String == "dnsbl.zone" })
        #expect(z["zone"] as? String == "all.test")
        #expect(z["state"] as? String == "disabled")
        #expect(z["reason"] as? String == "lists the test point 127.0.0.1 (it would list everyone)")
        #expect(z["alert"] as? Bool == true)
        await w.stop()
    }
}
