import Foundation
import Testing
@testable import Gateway
import SMTPProtocol

/// A listener behind a load balancer: the PROXY header's client is the one every check,
/// rule, limit and record uses; only the listed proxies may send one.
@Suite struct ProxyProtocolTests {
    /// Octets as the latin-1 text the raw client sends unchanged.
    static func text(_ b: [UInt8]) -> String { String(b.map { Character(UnicodeScalar($0)) }) }

    static let sig: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// v2, PROXY, TCP over IPv4: 203.0.113.7:4711 to 192.0.2.25:25.
    static let v2FromOutside = text(sig + [0x21, 0x11, 0, 12, 203, 0, 113, 7, 192, 0, 2, 25, 0x12, 0x67, 0, 25])
    static let v2Local = text(sig + [0x20, 0x00, 0, 0])

    func gateway(proxies: [String] = ["127.0.0.0/8"], timeout: Int = 5) async throws -> (TestGateway, RecordingDownstream) {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].proxy.required = true
            c.listeners[0].proxy.addresses = proxies.map { IPNetwork($0)! }
            c.listeners[0].proxy.timeout = timeout
        }
        return (gw, down)
    }

    @Test func theHeadersClientIsCheckedAndLogged() async throws {
        let (gw, down) = try await gateway()
        // 127.0.0.1 may relay (authorizedAddresses); the client the header names may not.
        let d = try await Client.dialogue(port: gw.port, [.send("EHLO client.example.org\r\n", replies: 1), .send("MAIL FROM:<a@example.net>\r\n", replies: 1),
                                                          .send("RCPT TO:<victim@example.com>\r\n", replies: 1), .send("QUIT\r\n", replies: 1)],
                                          early: Self.v2FromOutside)
        #expect(d.greeting.hasPrefix("220 "))
        #expect(d.replies[2] == ["550 5.7.1 <victim@example.com>: Relay access denied"])
        let records = try await gw.records(waitingFor: "session.close")
        let open = try #require(records.first { $0["event"] as? String == "session.open" })
        #expect(open["client"] as? String == "203.0.113.7")
        #expect(open["port"] as? Int == 4711)
        let proxy = try #require(open["proxy"] as? [String: Any])
        #expect(proxy["version"] as? Int == 2 && proxy["command"] as? String == "proxy")
        #expect(proxy["destination"] as? String == "192.0.2.25:25")
        #expect((proxy["via"] as? String)?.hasPrefix("127.0.0.1:") == true)
        let relay = try #require(records.first { $0["check"] as? String == "relay" })
        #expect(relay["client"] as? String == "203.0.113.7")
        #expect(relay["reason"] as? String == "domain example.com is not local and client 203.0.113.7 is not in authorizedAddresses")
        await gw.stop()
        down.stop()
    }

    @Test func version1AndTheLocalCommand() async throws {
        let (gw, down) = try await gateway()
        let v1 = try await Client.dialogue(port: gw.port, [.send("QUIT\r\n", replies: 1)], early: "PROXY TCP6 2001:db8::7 2001:db8::25 40000 25\r\n")
        #expect(v1.greeting.hasPrefix("220 ") && v1.replies == [["221 2.0.0 gw.test closing connection"]])
        // A health check: answered as any session, under the proxy's own address.
        let local = try await Client.dialogue(port: gw.port, [.send("QUIT\r\n", replies: 1)], early: Self.v2Local)
        #expect(local.greeting.hasPrefix("220 ") && local.replies == [["221 2.0.0 gw.test closing connection"]])
        let opens = try await gw.records(waitingFor: "session.close", count: 2).filter { $0["event"] as? String == "session.open" }
        #expect(opens.map { $0["client"] as? String } == ["2001:db8::7", "127.0.0.1"])
        #expect(opens.map { ($0["proxy"] as? [String: Any])?["command"] as? String } == ["proxy", "local"])
        #expect(opens.map { ($0["proxy"] as? [String: Any])?["version"] as? Int } == [1, 2])
        await gw.stop()
        down.stop()
    }

    @Test func aConnectionFromAnUnlistedAddressIsRefused() async throws {
        let (gw, down) = try await gateway(proxies: ["192.0.2.0/24"])
        let d = try await Client.dialogue(port: gw.port, [], early: Self.v2FromOutside)
        #expect(d.greeting == "421 4.7.0 Connections to this port must come through the load balancer")
        let r = try #require(try await gw.records(waitingFor: "session.refused").first { $0["event"] as? String == "session.refused" })
        #expect(r["client"] as? String == "127.0.0.1" && r["check"] as? String == "proxy" && r["action"] as? String == "tempfail")
        #expect(r["reason"] as? String == "127.0.0.1 is not in proxyAddresses")
        await gw.stop()
        down.stop()
    }

    @Test func aBadOrLateHeaderIsDroppedWithoutAGreeting() async throws {
        let (gw, down) = try await gateway(timeout: 1)
        let talker = try await Client.dialogue(port: gw.port, [], early: "EHLO client.example.org\r\n")
        #expect(talker.greeting == "" && talker.closed)
        let started = Date()
        let silent = try await Client.dialogue(port: gw.port, [])
        #expect(silent.greeting == "" && silent.closed)
        #expect(Date().timeIntervalSince(started) < 10)
        let refused = try await gw.records(waitingFor: "session.refused", count: 2).filter { $0["event"] as? String == "session.refused" }
        #expect(refused.map { $0["reason"] as? String } == ["not a PROXY protocol header", "no PROXY header within 1 s"])
        #expect(refused.allSatisfy { $0["action"] as? String == "drop" && $0["reply"] == nil })
        await gw.stop()
        down.stop()
    }
}
