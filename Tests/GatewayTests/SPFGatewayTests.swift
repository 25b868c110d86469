import Foundation
import Testing
import DNSResolver
@testable import Gateway

/// SPF end to end: clients connect from 127.0.0.5 (in authorizedAddresses, so the policy sets
/// checkAuthorized), DNS from fixtures.
@Suite struct SPFGatewayTests {
    static let fixtures = """
    spf.test. 300 IN TXT "v=spf1 ip4:127.0.0.5 -all"
    bad.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all exp=why.bad.test"
    why.bad.test. 300 IN TXT "%{i} is not allowed to send mail for %{d}"
    temp.test. SERVFAIL
    """

    static func start(_ settings: String = "{checkAuthorized: true}") async throws -> (DNSFixtureServer, RecordingDownstream, TestGateway) {
        let dns = try DNSFixtureServer(fixtures: fixtures)
        try await dns.start()
        let dir = NSTemporaryDirectory() + "mg-gwspf-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "name: spf\nchecks:\n  spf: \(settings)\n".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) {
            $0.policy = dir + "/p.yaml"
            $0.dns.servers = [dns.address]
            $0.dns.timeout = 1.5
        }
        return (dns, down, gw)
    }

    @Test func anSPFFailIsRefusedWithTheExplanationAndTheLogNamesTheMechanism() async throws {
        let (dns, down, gw) = try await Self.start()
        let d = try await Client.raw(port: gw.port, [("EHLO client.example.org\r\n", 1), ("MAIL FROM:<a@bad.test>\r\n", 1)], source: "127.0.0.5")
        #expect(d.replies[1] == ["550 5.7.23 <a@bad.test>: SPF fail: 127.0.0.5 is not allowed to send mail for bad.test"])
        let records = try await gw.records(waitingFor: "session.close")
        let v = try #require(records.first { $0["check"] as? String == "spf" && $0["stage"] as? String == "mail" })
        #expect(v["result"] as? String == "fail")
        #expect(v["action"] as? String == "reject")
        #expect(v["sender"] as? String == "a@bad.test")
        #expect(v["reason"] as? String == "mailfrom a@bad.test: fail by -all (domain bad.test, 0 DNS-querying terms, 0 void); explanation: 127.0.0.5 is not allowed to send mail for bad.test")
        #expect(down.messages.isEmpty)
        await gw.stop(); down.stop(); await dns.stop()
    }

    @Test func aPassIsForwardedWithReceivedSPFAndAuthenticationResults() async throws {
        let (dns, down, gw) = try await Self.start()
        let r = try await Client.smtplib(port: gw.port, from: "a@spf.test", to: ["b@example.org"], data: "Subject: x\r\n\r\ny\r\n", source: "127.0.0.5")
        #expect(r["ok"] as? Bool == true, "\(r)")
        let text = String(decoding: try #require(down.messages.first).data, as: UTF8.self)
        #expect(text.contains("\r\nReceived-SPF: pass (gw.test: domain of a@spf.test designates 127.0.0.5 as permitted sender) client-ip=127.0.0.5; envelope-from=\"a@spf.test\"; helo=client.example.org; receiver=gw.test; identity=mailfrom; mechanism=\"ip4:127.0.0.5\"\r\nAuthentication-Results: gw.test; spf=pass smtp.mailfrom=a@spf.test\r\nSubject: x\r\n"), "\(text)")
        await gw.stop(); down.stop(); await dns.stop()
    }

    @Test func aTemperrorIs451ByDefault() async throws {
        let (dns, down, gw) = try await Self.start()
        let d = try await Client.raw(port: gw.port, [("EHLO client.example.org\r\n", 1), ("MAIL FROM:<a@temp.test>\r\n", 1)], source: "127.0.0.5")
        #expect(d.replies[1] == ["451 4.7.24 <a@temp.test>: SPF temporary error, try again later"])
        await gw.stop(); down.stop(); await dns.stop()
    }
}
