import Foundation
import Testing
@testable import Gateway

/// `log.idInReplies`: a refusal names its session, and `mailgate log why` tells that
/// session's story from the log.
@Suite struct ReplyIDTests {
    @Test func aRefusalCarriesTheSessionIDAndLogWhyExplainsIt() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
            c.log.idInReplies = true
        }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\n", 1),
            ("RCPT TO:<victim@example.com>\r\n", 1),
            ("RCPT TO:<b@example.org>\r\n", 1),
            ("QUIT\r\n", 1),
        ])
        let records = try await gw.records(waitingFor: "session.close")
        let session = try #require(records.first?["session"] as? String)
        #expect(session.count == 20)
        // Its first half is the connect time.
        let t = try #require(Int(session.prefix(8), radix: 16))
        #expect(abs(t - Int(Date().timeIntervalSince1970)) < 60)
        #expect(d.replies[2] == ["550 5.7.1 <victim@example.com>: Relay access denied [id \(session)]"])
        // Positive replies stay as they were.
        #expect(d.replies[3] == ["250 2.1.5 Recipient <b@example.org> OK"])
        #expect(d.greeting.hasPrefix("220 ") && !d.greeting.contains("[id"))
        // The log keeps the reply without the id (the record has the session).
        let relay = try #require(records.first { $0["check"] as? String == "relay" })
        #expect(relay["reply"] as? String == "550 5.7.1 <victim@example.com>: Relay access denied")
        await gw.stop()
        down.stop()

        let (status, out) = try await runProgram(CLITests.binary, ["log", "why", "[id \(session)]", gw.logPath])
        #expect(status == 0, "\(out)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.first == "Session \(session) from 127.0.0.1 port \(try #require(records.first?["port"] as? Int)), listener smtp, policy \(try #require(records.first?["policy"] as? String)) \(try #require(records.first?["policy_version"] as? String))")
        #expect(lines.contains { $0.hasSuffix("rcpt     relay      denied       REJECT  for <victim@example.com>  550 5.7.1 <victim@example.com>: Relay access denied  because domain example.com is not local and client 127.0.0.1 is not in authorizedAddresses") }, "\(out)")
        #expect(lines.contains { $0.contains("closed: quit, 1 transaction(s)") }, "\(out)")
        #expect(lines.last == "In short: refused at rcpt by relay: 550 5.7.1 <victim@example.com>: Relay access denied, because domain example.com is not local and client 127.0.0.1 is not in authorizedAddresses")

        let (json, raw) = try await runProgram(CLITests.binary, ["log", "why", "--json", "\(session).1", gw.logPath])
        #expect(json == 0)
        // One line per record, verdicts folded into a line sharing it.
        #expect(raw.split(separator: "\n").count == Set(records.filter { $0["session"] as? String == session }.compactMap { $0["seq"] as? Int }).count)

        let (missing, said) = try await runProgram(CLITests.binary, ["log", "why", "0123456789abcdef", gw.logPath])
        #expect(missing == 1)
        #expect(said == "mailgate: no session 0123456789abcdef in \(gw.logPath)\n")
    }
}
