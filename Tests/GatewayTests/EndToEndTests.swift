import Foundation
import Testing
import DecisionLog
import SMTPProtocol
@testable import Gateway

/// Through real sockets: Python's smtplib or a raw socket client → the gateway → a recording
/// downstream.
@Suite struct EndToEndTests {
    static let message = "From: a@example.net\r\nTo: b@example.org\r\nSubject: test\r\nMessage-ID: <e2e-1@example.net>\r\n\r\nHello.\r\n.leading dot\r\n..two dots\r\nlast line\r\n"

    @Test func cleanMessageArrivesByteExactWithReceivedHeader() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.message)
        #expect(r["ok"] as? Bool == true, "\(r)")
        #expect(down.messages.count == 1)
        let m = try #require(down.messages.first)
        #expect(m.mailFrom == "a@example.net")
        #expect(m.rcpts == ["b@example.org"])
        let text = String(decoding: m.data, as: UTF8.self)
        let pattern = #/^Received: from client\.example\.org \(\[127\.0\.0\.1\]\)\r\n\tby gw\.test \(MailGate\) with ESMTP id [0-9a-f]{20}\.1\r\n\tfor <b@example\.org>; [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n/#
        let match = try #require(text.firstMatch(of: pattern))
        #expect(String(text[match.range.upperBound...]) == Self.message)

        let records = try await gw.records(waitingFor: "session.close")
        let txn = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(txn["action"] as? String == "accept")
        #expect(txn["sender"] as? String == "a@example.net")
        #expect(txn["recipients"] as? [String] == ["b@example.org"])
        #expect(txn["message_id"] as? String == "<e2e-1@example.net>")
        #expect(txn["size"] as? Int == Self.message.utf8.count)
        #expect(txn["reply"] as? String == "250 2.0.0 Ok: queued as TEST1")
        let ds = try #require(txn["downstream"] as? [String: Any])
        #expect(ds["target"] as? String == "smtp:127.0.0.1:\(down.port)")
        #expect(ds["result"] as? String == "delivered")
        #expect(records.map { $0["event"] as? String ?? "" } == ["session.open", "verdict", "verdict", "verdict", "transaction.commit", "transaction", "session.close"])
        await gw.stop()
        down.stop()
        let v = try LogVerifier.verify(path: gw.logPath)
        #expect(v.ok, "\(v.problems)")
    }

    @Test func severalListenersIPv4AndIPv6() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            var second = c.listeners[0]
            second.name = "submission"
            second.bind = ["[::1]:0"]
            second.smtpGreeting = "gw6.test ready for IPv6"
            c.listeners.append(second)
        }
        let v6 = try #require(gw.server.boundAddresses(listener: "submission").first?.port)
        let a = try await Client.raw(port: gw.port, [("QUIT\r\n", 1)])
        let b = try await Client.raw(port: v6, host: "::1", [("EHLO [IPv6:::1]\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
                                                           ("Subject: v6\r\n\r\nx\r\n.\r\n", 1)])
        #expect(a.greeting == "220 gw.test ESMTP MailGate ready")
        #expect(b.greeting == "220 gw6.test ready for IPv6")
        #expect(b.replies[1] == ["250 2.0.0 Ok: queued as TEST1"])
        let text = String(decoding: try #require(down.messages.first).data, as: UTF8.self)
        #expect(text.hasPrefix("Received: from [IPv6:::1] ([IPv6:::1])\r\n"))
        let records = try await gw.records(waitingFor: "session.close", count: 2)
        let opens = records.filter { $0["event"] as? String == "session.open" }
        #expect(Set(opens.compactMap { $0["listener"] as? String }) == ["smtp", "submission"])
        #expect(Set(opens.compactMap { $0["client"] as? String }) == ["127.0.0.1", "::1"])
        await gw.stop()
        down.stop()
    }

    @Test func largeMessageIsSpooledAndArrivesWhole() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        var body = "Subject: big\r\n\r\n"
        let line = String(repeating: "0123456789", count: 7) + "\r\n"  // 72 octets
        for i in 0..<40_000 { body += i % 100 == 0 ? ".dot line \(i)\r\n" : line }  // ~2.9 MB, past the 64 KiB memory limit
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: body)
        #expect(r["ok"] as? Bool == true)
        let m = try #require(down.messages.first)
        let text = String(decoding: m.data, as: UTF8.self)
        let bodyStart = try #require(text.range(of: "Subject: big"))
        #expect(String(text[bodyStart.lowerBound...]) == body)
        await gw.stop()
        down.stop()
    }

    @Test func relayIsDeniedForUnauthorizedClients() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
        }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\n", 1),
            ("RCPT TO:<victim@example.com>\r\n", 1),
            ("RCPT TO:<b@EXAMPLE.ORG>\r\n", 1),
            ("RCPT TO:<postmaster>\r\n", 1),
            ("QUIT\r\n", 1),
        ])
        #expect(d.replies[2] == ["550 5.7.1 <victim@example.com>: Relay access denied"])
        #expect(d.replies[3] == ["250 2.1.5 Recipient <b@EXAMPLE.ORG> OK"])
        #expect(d.replies[4] == ["250 2.1.5 Recipient <postmaster> OK"])
        let records = try await gw.records(waitingFor: "session.close")
        let relay = try #require(records.first { $0["check"] as? String == "relay" })
        #expect(relay["stage"] as? String == "rcpt")
        #expect(relay["action"] as? String == "reject")
        #expect(relay["result"] as? String == "denied")
        #expect(relay["recipient"] as? String == "victim@example.com")
        #expect(relay["sender"] as? String == "a@example.net")
        #expect(relay["reply"] as? String == "550 5.7.1 <victim@example.com>: Relay access denied")
        await gw.stop()
        down.stop()
    }

    @Test(arguments: ["127.*", "127.0.0.0/8", "127.0.0.0/255.0.0.0", "127.0.0.1", "localhost/8"])
    func authorizedAddressesFormsAllowRelay(form: String) async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [IPNetwork(form) ?? ConfigLoader.Reader(file: "").resolveHostNetwork(form)!]
        }
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["someone@example.com"], data: "Subject: x\r\n\r\nx\r\n")
        #expect(r["ok"] as? Bool == true, "\(r)")
        #expect(down.messages.first?.rcpts == ["someone@example.com"])
        await gw.stop()
        down.stop()
    }

    @Test func declaredSizeTooBigIsRefusedAtMail() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].maxmessagesize = 10 }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:<a@example.net> SIZE=20000\r\n", 1),
            ("MAIL FROM:<a@example.net> SIZE=100\r\n", 1),
        ])
        #expect(d.replies[0].first?.contains("\n250-SIZE 10240\n") == true)
        #expect(d.replies[1] == ["552 5.3.4 Message size exceeds fixed maximum message size"])
        #expect(d.replies[2] == ["250 2.1.0 Sender <a@example.net> OK"])
        let records = try await gw.records()
        let v = try #require(records.first { $0["check"] as? String == "size" && $0["action"] as? String == "reject" })
        #expect(v["stage"] as? String == "mail")
        #expect(v["reason"] as? String == "declared SIZE=20000 exceeds maxmessagesize 10240")
        await gw.stop()
        down.stop()
    }

    @Test func oversizedDataIsRefusedAfterTheEnd() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].maxmessagesize = 10 }
        let big = "Subject: big\r\n\r\n" + String(repeating: String(repeating: "x", count: 98) + "\r\n", count: 200)
        // smtplib declares SIZE=, so it is refused at MAIL…
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: big)
        #expect(r["error"] as? String == "sender")
        #expect(r["code"] as? Int == 552)
        // …a client that declares nothing is refused at the end of data.
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            (big + ".\r\n", 1),
            ("NOOP\r\n", 1),
        ])
        #expect(d.replies[0].last == "354 End data with <CR><LF>.<CR><LF>")
        #expect(d.replies[1] == ["552 5.3.4 Message size exceeds fixed maximum message size"])
        #expect(d.replies[2] == ["250 2.0.0 OK"])
        #expect(down.messages.isEmpty)
        let records = try await gw.records()
        let txn = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(txn["action"] as? String == "reject")
        #expect(txn["size"] as? Int == big.utf8.count)
        let v = try #require(records.first { $0["check"] as? String == "size" && $0["stage"] as? String == "message" })
        #expect(v["reason"] as? String == "message of \(big.utf8.count)+ octets exceeds maxmessagesize 10240")
        await gw.stop()
        down.stop()
    }

    @Test func linesTooLong() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let longCommand = "NOOP " + String(repeating: "a", count: 600) + "\r\n"
        let longText = String(repeating: "b", count: 1200) + "\r\n"
        let d = try await Client.raw(port: gw.port, [
            (longCommand, 1),
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 3),
            ("Subject: x\r\n\r\n" + longText + ".\r\n", 1),
            ("NOOP\r\n", 1),
        ])
        #expect(d.replies[0] == ["500 5.5.2 Line too long"])
        #expect(d.replies[3] == ["500 5.5.2 Message refused: line longer than 1000 octets (RFC 5321 4.5.3.1.6)"])
        #expect(d.replies[4] == ["250 2.0.0 OK"])
        #expect(down.messages.isEmpty)
        await gw.stop()
        down.stop()
    }

    @Test func badSequence() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
        }
        let d = try await Client.raw(port: gw.port, [
            ("MAIL FROM:<a@example.net>\r\n", 1),
            ("EHLO client.example.org\r\n", 1),
            ("RCPT TO:<b@example.org>\r\n", 1),
            ("DATA\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\n", 1),
            ("DATA\r\n", 1),
            ("RCPT TO:<nobody@example.com>\r\n", 1),
            ("DATA\r\n", 1),
            ("RSET\r\n", 1),
            ("VRFY someone\r\n", 1),
            ("QUIT\r\n", 1),
        ])
        #expect(d.replies.map { $0.first ?? "" } == [
            "503 5.5.1 Send HELO/EHLO first",
            d.replies[1].first ?? "",
            "503 5.5.1 Need MAIL before RCPT",
            "503 5.5.1 Need MAIL command",
            "250 2.1.0 Sender <a@example.net> OK",
            "503 5.5.1 Nested MAIL command",
            "503 5.5.1 Need RCPT command",
            "550 5.7.1 <nobody@example.com>: Relay access denied",
            "554 5.5.1 No valid recipients",
            "250 2.0.0 Reset OK",
            "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
            "221 2.0.0 gw.test closing connection",
        ])
        #expect(d.replies[1].first?.hasPrefix("250-gw.test Hello client.example.org [127.0.0.1]") == true)
        await gw.stop()
    }

    @Test func syntaxErrorsGetClearReplies() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"])
        let d = try await Client.raw(port: gw.port, [
            ("EHLO\r\n", 1),
            ("HELO client.example.org\r\n", 1),
            ("MAIL FROM:a@example.net\r\n", 1),
            ("MAIL FROM:<a@example.net> SIZE=10\r\n", 1),
            ("MAIL FROM:<bad address@example.net>\r\n", 1),
            ("MAIL FROM:<>\r\n", 1),
            ("RCPT TO:<ü@example.org>\r\n", 1),
            ("RCPT TO:<b@example.org> NOTIFY=NEVER\r\n", 1),
            ("NO\u{0}OP\r\n", 1),
        ])
        #expect(d.replies.map { $0.first ?? "" } == [
            "501 5.5.4 Syntax: EHLO hostname",
            "250 gw.test Hello client.example.org [127.0.0.1]",
            "501 5.1.7 Bad sender address syntax",
            "555 5.5.4 MAIL parameters require EHLO",
            "501 5.1.7 Bad sender address syntax: bad local part",
            "250 2.1.0 Sender <> OK",
            "553 5.6.7 Non-ASCII address requires SMTPUTF8",
            "555 5.5.4 Unsupported RCPT parameter NOTIFY",
            "500 5.5.2 Syntax error, NUL in command",
        ])
        await gw.stop()
    }

    @Test func addressBracketsEnforcementOff() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].addressBracketsEnforcement = false }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:a@example.net\r\n", 1),
            ("RCPT TO:b@example.org\r\n", 1),
        ])
        #expect(d.replies[1] == ["250 2.1.0 Sender <a@example.net> OK"])
        #expect(d.replies[2] == ["250 2.1.5 Recipient <b@example.org> OK"])
        await gw.stop()
        down.stop()
    }

    @Test func heloEhloEnforcementOff() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].heloEhloEnforcement = false }
        let d = try await Client.raw(port: gw.port, [("MAIL FROM:<a@example.net>\r\n", 1)])
        #expect(d.replies[0] == ["250 2.1.0 Sender <a@example.net> OK"])
        await gw.stop()
    }

    @Test func smtpUTF8AddressesWithTheExtension() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:<jörg@example.net> SMTPUTF8 BODY=8BITMIME\r\n", 1),
            ("RCPT TO:<zoë@example.org>\r\n", 1),
            ("DATA\r\n", 1),
            ("Subject: ünïcode\r\n\r\nbody\r\n.\r\n", 1),
        ].map { (String(decoding: Array($0.0.utf8).map { $0 }, as: UTF8.self).utf8.map { Character(Unicode.Scalar($0)) }.reduce("") { $0 + String($1) }, $0.1) })
        #expect(d.replies[1] == ["250 2.1.0 Sender <jÃ¶rg@example.net> OK"])  // latin-1 view of UTF-8
        #expect(d.replies[4] == ["250 2.0.0 Ok: queued as TEST1"])
        let m = try #require(down.messages.first)
        #expect(m.rcpts == ["zoë@example.org"])
        #expect(String(decoding: m.data, as: UTF8.self).contains("with UTF8SMTP id"))
        await gw.stop()
        down.stop()
    }
}
