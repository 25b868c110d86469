import Foundation
import Testing
@testable import Gateway
import DecisionLog

/// `log.redact`: recipients' local parts never reach the log, wherever a record quotes them.
@Suite struct LogRedactionTests {
    func run(_ mode: LogRedaction) async throws -> (text: String, records: [[String: Any]]) {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
            c.log.redact = mode
            c.log.redactKey = "site-secret"
        }
        let d = try await Client.raw(port: gw.port, [("EHLO c.example\r\n", 1), ("MAIL FROM:<a@example.net>\r\n", 1),
                                                     ("RCPT TO:<Victim@example.com>\r\n", 1), ("RCPT TO:<bob@example.org>\r\n", 1),
                                                     ("DATA\r\n", 1), ("Subject: x\r\n\r\nhi\r\n.\r\n", 1), ("QUIT\r\n", 1)])
        #expect(d.replies[2] == ["550 5.7.1 <Victim@example.com>: Relay access denied"])
        #expect(d.replies[5].first?.hasPrefix("250 ") == true, "\(d.replies)")
        let records = try await gw.records(waitingFor: "session.close")
        await gw.stop()
        down.stop()
        // The client still heard its own address; the downstream got the message as sent.
        #expect(down.messages.first?.rcpts.first?.contains("bob@example.org") == true, "\(down.messages.map(\.rcpts))")
        return (try String(contentsOfFile: gw.logPath, encoding: .utf8), records)
    }

    @Test func hashKeepsTheDomainAndAStableToken() async throws {
        let (text, records) = try await run(.hash)
        for leaked in ["victim@", "Victim@", "bob@"] { #expect(!text.contains(leaked), "\(leaked)") }
        func token(_ local: String) -> String { "h-" + Digest.sha256Hex(Array("site-secret\u{0}\(local)".utf8)).prefix(16) }
        let relay = try #require(records.first { $0["check"] as? String == "relay" })
        #expect(relay["recipient"] as? String == "\(token("victim"))@example.com")
        #expect(relay["reply"] as? String == "550 5.7.1 <\(token("victim"))@example.com>: Relay access denied")
        let t = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(t["recipients"] as? [String] == ["\(token("bob"))@example.org"])
        // The RCPT's own verdicts and the 250 reply quoting the address are redacted too.
        #expect(text.contains("\(token("bob"))@example.org"))
    }

    @Test func dropLeavesOnlyTheDomain() async throws {
        let (text, records) = try await run(.drop)
        #expect(!text.contains("bob@") && !text.contains("ictim@"))
        let t = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(t["recipients"] as? [String] == ["-@example.org"])
    }
}
