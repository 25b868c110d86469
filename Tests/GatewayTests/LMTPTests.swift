import Foundation
import Testing
@testable import Gateway

/// LMTP in and out (RFC 2033), through real sockets: a listener with `protocol: lmtp` on TCP
/// and on a unix socket, and `lmtp:` downstream targets whose per-recipient replies reach
/// each recipient.
@Suite(.serialized) struct LMTPTests {
    static let message = "Subject: lmtp\r\nMessage-ID: <lmtp@example.net>\r\n\r\nHello.\r\n.\r\n"

    static func session(_ steps: [(String?, Int)] = [], port: Int = 0, unix: String? = nil) async throws -> [String] {
        let r = try await Client.raw(port: port, [("LHLO client.example.net\r\n", 1), ("MAIL FROM:<a@example.net>\r\n", 1),
                                                  ("RCPT TO:<b@example.org>\r\n", 1), ("RCPT TO:<c@example.org>\r\n", 1),
                                                  ("DATA\r\n", 1), (message, 2)] + steps + [("QUIT\r\n", 1)], unix: unix)
        return r.replies.flatMap { $0 }
    }

    @Test func anLMTPListenerAnswersEachRecipientFromItsOwnOutcome() async throws {
        let down = try await RecordingDownstream.start(.rejectDataFor("c@example.org", "552 5.2.2 <c@example.org> mailbox full"), lmtp: true)
        let gw = try await TestGateway(downstream: ["lmtp:127.0.0.1:\(down.port)"]) { $0.listeners[0].protocol = "lmtp" }
        let replies = try await Self.session(port: gw.port)
        #expect(replies.count == 8)
        #expect(replies[0].hasPrefix("250-gw.test Hello client.example.net"))
        #expect(Array(replies[4...6]) == ["354 End data with <CR><LF>.<CR><LF>", "250 2.1.5 <b@example.org> delivered",
                                          "552 5.2.2 <c@example.org> mailbox full"])
        #expect(down.messages.count == 1)
        #expect(down.messages.first?.rcpts == ["b@example.org"])
        let text = String(decoding: down.messages.first?.data ?? [], as: UTF8.self)
        #expect(text.contains("by gw.test (MailGate) with LMTP id "), "\(text.prefix(300))")
        let records = try await gw.records(waitingFor: "session.close")
        let txn = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(txn["action"] as? String == "partial")
        let downstream = txn["downstream"] as? [String: Any]
        #expect(downstream?["recipients"] as? [String] == ["250 2.1.5 <b@example.org> delivered", "552 5.2.2 <c@example.org> mailbox full"])
        #expect(records.first { $0["event"] as? String == "session.open" }?["protocol"] as? String == "lmtp")
        await gw.stop()
        down.stop()
    }

    @Test func anLMTPListenerRefusesHELOAndEHLO() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.listeners[0].protocol = "lmtp" }
        let r = try await Client.raw(port: gw.port, [("EHLO a.example\r\n", 1), ("HELO a.example\r\n", 1), ("LHLO a.example\r\n", 1)])
        #expect(r.greeting == "220 gw.test LMTP MailGate ready")
        #expect(r.replies[0] == ["500 5.5.1 This is an LMTP server: use LHLO"])
        #expect(r.replies[1] == ["500 5.5.1 This is an LMTP server: use LHLO"])
        #expect(r.replies[2].first?.hasPrefix("250-gw.test Hello a.example") == true)
        // An SMTP downstream's one reply answers each recipient.
        let replies = try await Self.session(port: gw.port)
        #expect(replies[5].hasPrefix("250 2.0.0 Ok: queued as TEST"), "\(replies)")
        #expect(replies[6] == replies[5])
        await gw.stop()
        down.stop()
    }

    @Test func lmtpOverUnixSocketsBothWays() async throws {
        let dir = NSTemporaryDirectory() + "mg-lmtp-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let down = try await RecordingDownstream.start(lmtp: true, unix: dir + "/down.sock")
        let gw = try await TestGateway(downstream: ["lmtp:unix:\(dir)/down.sock"]) { c in
            c.listeners[0].protocol = "lmtp"
            c.listeners[0].bind = ["unix:\(dir)/lmtp.sock"]
            c.listeners[0].socketMode = 0o600
        }
        var st = stat()
        #expect(stat(dir + "/lmtp.sock", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(st.st_mode & S_IFMT == S_IFSOCK)
        let replies = try await Self.session(unix: dir + "/lmtp.sock")
        #expect(Array(replies[5...6]) == ["250 2.1.5 <b@example.org> delivered", "250 2.1.5 <c@example.org> delivered"], "\(replies)")
        #expect(down.messages.first?.rcpts == ["b@example.org", "c@example.org"])
        await gw.stop()
        down.stop()
    }

    /// An SMTP client has one reply for the message, an LMTP target one per recipient: so
    /// an SMTP transaction toward an LMTP target takes one recipient (452 4.5.3 to the next,
    /// which the client sends on later), and each message's answer is that recipient's own:
    /// nothing doubled, nothing lost.
    @Test func anSMTPClientGivesAnLMTPTargetOneRecipientPerTransaction() async throws {
        let down = try await RecordingDownstream.start(.rejectDataFor("c@example.org", "452 4.2.2 <c@example.org> over quota"), lmtp: true)
        let gw = try await TestGateway(downstream: ["lmtp:127.0.0.1:\(down.port)"])
        let r = try await Client.raw(port: gw.port, [("EHLO a.example\r\n", 1), ("MAIL FROM:<a@example.net>\r\n", 1),
                                                     ("RCPT TO:<b@example.org>\r\n", 1), ("RCPT TO:<c@example.org>\r\n", 1),
                                                     ("DATA\r\n", 1), (Self.message, 1),
                                                     ("MAIL FROM:<a@example.net>\r\n", 1), ("RCPT TO:<c@example.org>\r\n", 1),
                                                     ("DATA\r\n", 1), (Self.message, 1), ("QUIT\r\n", 1)])
        #expect(r.replies[3] == ["452 4.5.3 Too many recipients"])
        #expect(r.replies[5] == ["250 2.1.5 <b@example.org> delivered"])
        #expect(r.replies[9] == ["452 4.2.2 <c@example.org> over quota"])
        #expect(down.messages.map(\.rcpts) == [["b@example.org"]])
        await gw.stop()
        down.stop()
    }

    @Test func theConfigurationTakesLMTPListenersAndTargets() throws {
        let c = try ConfigLoader.parse("""
            listeners:
              - name: lmtp
                bind: ["127.0.0.1:24", "unix:/run/mailgate/lmtp.sock"]
                protocol: lmtp
                socketMode: "0660"
            downstream: {targets: ["lmtp:127.0.0.1:2424", "lmtp:unix:/run/dovecot/lmtp", "smtp:[::1]:25"]}

            """, file: "t.yaml")
        #expect(c.listeners[0].dialect == .lmtp)
        #expect(c.listeners[0].socketMode == 0o660)
        #expect(BindAddress("unix:/run/mailgate/lmtp.sock")?.unixPath == "/run/mailgate/lmtp.sock")
        #expect(DownstreamTarget("lmtp:unix:/run/dovecot/lmtp") == .lmtp(.unix("/run/dovecot/lmtp")))
        #expect(DownstreamTarget("lmtp:127.0.0.1:2424") == .lmtp(.tcp(host: "127.0.0.1", port: 2424)))
        #expect(DownstreamTarget("smtp:unix:/x") == nil, "SMTP to a unix socket is not a thing we offer")
        #expect(DownstreamTarget("lmtp:unix:relative") == nil)
        for bad in ["socketMode: \"0999\"", "socketMode: rw", "protocol: xmtp"] {
            #expect(throws: (any Error).self, "\(bad)") {
                _ = try ConfigLoader.parse("listeners:\n  - bind: [\"127.0.0.1:24\"]\n    \(bad)\n", file: "t.yaml")
            }
        }
    }
}
