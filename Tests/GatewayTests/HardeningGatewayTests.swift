import Foundation
import Testing
import NIOCore
import SMTPProtocol
import DecisionLog
@testable import Gateway

/// End-to-end regression tests of the hardening issue: each reproduces a defect that was
/// there before, through a real socket, and counts what reached the downstream.
@Suite(.serialized) struct HardeningGatewayTests {
    static let head = "EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"

    /// One header with endless continuation lines: refused at the bound, nothing forwarded,
    /// the session goes on.
    @Test func anEndlessHeaderFieldIsRefusedAtItsBound() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let fold = String(repeating: " continued text of one endless field\r\n", count: 8_000)  // ~300 KB
        let d = try await Client.raw(port: gw.port, [
            (Self.head, 4), ("Subject: x\r\n" + fold + "\r\nbody\r\n.\r\n", 1), ("NOOP\r\n", 1),
        ])
        #expect(d.replies[1] == ["552 5.3.4 Message header section exceeds 256 KB; message refused"])
        #expect(d.replies[2] == ["250 2.0.0 OK"])
        #expect(down.messages.isEmpty)
        let records = try await gw.records()
        #expect(records.contains { $0["result"] as? String == "header-too-large" && $0["action"] as? String == "reject" })
        await gw.stop()
        down.stop()
    }

    /// Lines of a dropped forged Authentication-Results field count toward maxmessagesize.
    @Test func droppedFieldsCountTowardTheSizeLimit() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].maxmessagesize = 10 }
        let fold = String(repeating: " dkim=pass header.d=bank.example\r\n", count: 600)  // ~21 KB
        let d = try await Client.raw(port: gw.port, [(Self.head, 4), ("Authentication-Results: gw.test;\r\n" + fold + "\r\nbody\r\n.\r\n", 1)])
        #expect(d.replies[1] == ["552 5.3.4 Message size exceeds fixed maximum message size"])
        #expect(down.messages.isEmpty)
        await gw.stop()
        down.stop()
    }

    /// A forged Authentication-Results in our name is removed however it is folded.
    @Test func forgedResultsAreRemovedInEveryForm() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let forged = "Authentication-Results:\r\n\tgw.test; dkim=pass header.d=bank.example\r\n"
            + "Authentication-Results: (c) gw.test; spf=pass\r\n" + "Authentication-Results : gw.test; dmarc=pass\r\n"
            + "Authentication-Results: other.example; dkim=fail\r\n"
        let d = try await Client.raw(port: gw.port, [(Self.head, 4), (forged + "Subject: s\r\n\r\nbody\r\n.\r\n", 1)])
        #expect(d.replies[1].first?.hasPrefix("250 ") == true, "\(d)")
        let text = String(decoding: try #require(down.messages.first).data, as: UTF8.self)
        #expect(!text.contains("bank.example"))
        #expect(!text.contains("spf=pass"))
        #expect(!text.contains("dmarc=pass"))
        #expect(text.contains("Authentication-Results: other.example; dkim=fail\r\nSubject: s\r\n"))
        let records = try await gw.records()
        #expect(records.contains { $0["check"] as? String == "headers" && ($0["reason"] as? String)?.hasPrefix("removed 3 ") == true })
        await gw.stop()
        down.stop()
    }

    /// Every refused command counts (Postfix's hard error limit), not only unknown verbs: a
    /// client looping `MAIL` is cut off.
    @Test func everyRefusedCommandCountsTowardTheErrorLimit() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].maxUnrecognizedCommands = 3 }
        let d = try await Client.raw(port: gw.port, [("EHLO client.example.org\r\n", 1)] + Array(repeating: ("MAIL\r\n", 1), count: 4))
        #expect(d.replies[1...3].allSatisfy { $0.first?.hasPrefix("501 ") == true }, "\(d)")
        #expect(d.replies[4] == ["421 4.7.0 Too many errors, closing connection"])
        #expect(d.closed)
        let records = try await gw.records(waitingFor: "session.close")
        #expect(records.last?["reason"] as? String == "too-many-errors")
        await gw.stop()
    }

    /// Harmless commands without a message are junk past 100; each then counts as an error.
    @Test func junkCommandsAreBounded() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].maxUnrecognizedCommands = 2 }
        let d = try await Client.raw(port: gw.port, [(String(repeating: "NOOP\r\n", count: 110), 103)])
        let replies = d.replies[0]
        #expect(replies.prefix(102).allSatisfy { $0 == "250 2.0.0 OK" }, "\(replies.count)")
        #expect(replies.last == "421 4.7.0 Too many errors, closing connection")
        await gw.stop()
    }

    /// `user%remote@local`, `remote!user@local` and `"user@remote"@local` would be relayed by
    /// a Postfix downstream; from an untrusted client they are refused. `user@local.` is
    /// forwarded without the dot.
    @Test func routingLocalPartsAreRefusedFromUntrustedClients() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
        }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\n", 2),
            ("RCPT TO:<victim%remote.example@example.org>\r\n", 1),
            ("RCPT TO:<remote.example!victim@example.org>\r\n", 1),
            ("RCPT TO:<\"victim@remote.example\"@example.org>\r\n", 1),
            ("RCPT TO:<b@example.org.>\r\nDATA\r\n", 2),
            ("Subject: s\r\n\r\nbody\r\n.\r\n", 1),
        ])
        #expect(d.replies[1] == ["550 5.7.1 <victim%remote.example@example.org>: Relay access denied (sender-specified routing)"])
        #expect(d.replies[2] == ["550 5.7.1 <remote.example!victim@example.org>: Relay access denied (sender-specified routing)"])
        #expect(d.replies[3] == ["550 5.7.1 <\"victim@remote.example\"@example.org>: Relay access denied (sender-specified routing)"])
        #expect(d.replies[4].first == "250 2.1.5 Recipient <b@example.org> OK")
        #expect(down.messages.map(\.rcpts) == [["b@example.org"]])
        let records = try await gw.records()
        #expect(records.filter { $0["check"] as? String == "relay" && $0["result"] as? String == "routing" }.count == 3)
        await gw.stop()
        down.stop()
    }

    @Test func trustedClientsMayUseRoutingLocalParts() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let d = try await Client.raw(port: gw.port, [("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<u%r@example.org>\r\n", 3)])
        #expect(d.replies[0].last == "250 2.1.5 Recipient <u%r@example.org> OK")
        await gw.stop()
        down.stop()
    }

    /// A spool that cannot be read back is a 451, never a cut message with 250.
    @Test func aSpoolReadErrorIsATempfailAndNothingIsForwarded() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        MessageSpool.readFault.withLockedValue { $0 = { offset in offset >= 64 * 1024 ? EIO : nil } }
        defer { MessageSpool.readFault.withLockedValue { $0 = nil } }
        let body = String(repeating: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", count: 3000)  // ~190 KB, spilled
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: big\r\n\r\n" + body)
        #expect(r["code"] as? Int == 451, "\(r)")
        #expect(r["text"] as? String == "4.3.0 Local error reading the message, try again later")
        #expect(down.messages.isEmpty)
        let records = try await gw.records()
        let t = try #require(records.last { $0["event"] as? String == "transaction" })
        #expect((t["downstream"] as? [String: Any])?["result"] as? String == "local-error")
        // The target is not blamed for our own disk.
        #expect(!gw.server.shared.forwarder.isDead("smtp:127.0.0.1:\(down.port)"))
        await gw.stop()
        down.stop()
    }

    /// Once the dot is out, the next target is never tried: no second copy.
    @Test func afterTheDotNoOtherTargetIsTried() async throws {
        let stall = try await RecordingDownstream.start(.stallAfterDot)
        let good = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(stall.port)", "smtp:127.0.0.1:\(good.port)"]) { c in
            c.downstream.dataTimeout = 1
        }
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: once\r\n\r\nbody\r\n")
        #expect(r["code"] as? Int == 451)
        #expect(good.messages.isEmpty)
        #expect(good.connections == 0)
        await gw.stop()
        stall.stop()
        good.stop()
    }

    /// The decision is durable before the dot goes out: the commit record precedes the
    /// downstream's 250, so a log failure afterwards cannot turn a delivered message into a
    /// client retry.
    @Test func theCommitRecordIsWrittenBeforeDelivery() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: s\r\n\r\nbody\r\n")
        #expect(r["ok"] as? Bool == true)
        let events = try await gw.records().compactMap { $0["event"] as? String }
        let commit = try #require(events.firstIndex(of: "transaction.commit"))
        let outcome = try #require(events.firstIndex(of: "transaction"))
        #expect(commit < outcome)
        await gw.stop()
        down.stop()
    }

    /// One byte at a time, each well inside connectionTimeout, no longer holds a session:
    /// the whole line must arrive within it.
    @Test func aTricklingClientIsCutOffAtTheLineDeadline() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].connectionTimeout = 1 }
        _ = try await Client.run("raw", ["port": gw.port, "timeout": 10, "steps":
            Array(repeating: ["send": "N", "replies": 0, "sleep": 0.3] as [String: Any], count: 12) + [["replies": 1]]])
        let records = try await gw.records(waitingFor: "session.close")
        #expect(records.contains { $0["check"] as? String == "protocol" && $0["result"] as? String == "timeout" })
        let close = try #require(records.last { $0["event"] as? String == "session.close" })
        #expect(close["reason"] as? String == "timeout")
        // Cut off after about one second, though a byte came every 0.3 s.
        #expect((close["duration_ms"] as? Int ?? 99_999) < 2_500, "\(close)")
        await gw.stop()
    }

    @Test func theDataPhaseHasADeadline() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].dataDeadline = 1 }
        let r = try await Client.run("raw", ["port": gw.port, "timeout": 10, "steps":
            [["send": Self.head, "replies": 4]] + Array(repeating: ["send": "line\r\n", "replies": 0, "sleep": 0.3] as [String: Any], count: 6)
            + [["send": ".\r\n", "replies": 1]]])
        _ = r
        let records = try await gw.records(waitingFor: "session.close")
        let v = try #require(records.first { $0["result"] as? String == "data-deadline" })
        #expect(v["reply"] as? String == "451 4.4.2 DATA took longer than 1s; message discarded")
        #expect(records.last { $0["event"] as? String == "session.close" }?["reason"] as? String == "timeout")
        #expect(down.messages.isEmpty)
        await gw.stop()
        down.stop()
    }
}

/// Found in review of the hardening change.
@Suite(.serialized) struct HardeningReviewTests {
    /// A HELO that is no domain goes into the Received comment, escaped, never as the
    /// from-domain (it could fake a comment and an address literal).
    @Test func anInvalidHeloIsEscapedInReceived() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].handlerchain = ["size"] }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO x([10.0.0.1])\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            ("Subject: s\r\n\r\nb\r\n.\r\n", 1),
        ])
        #expect(d.replies[1].first?.hasPrefix("250 ") == true, "\(d)")
        let text = String(decoding: try #require(down.messages.first).data, as: UTF8.self)
        #expect(text.hasPrefix("Received: from unknown (helo=x\\([10.0.0.1]\\) [127.0.0.1])\r\n"), "\(text)")
        await gw.stop()
        down.stop()
    }

    /// Temporary answers (greylisting, our own trouble) are not client errors; a refused
    /// message's answer is never replaced by 421.
    @Test func onlyRefusalsCountAndTheMessageAnswerStands() async throws {
        let down = try await RecordingDownstream.start(.rejectData("554 5.7.1 no thanks"))
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].maxUnrecognizedCommands = 1 }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            ("Subject: s\r\n\r\nb\r\n.\r\n", 1),
            ("BOGUS\r\n", 1),
        ])
        // The downstream's refusal reaches the client as it is (errors now 1, the limit).
        #expect(d.replies[1] == ["554 5.7.1 no thanks"])
        // The next refused command is past the limit.
        #expect(d.replies[2] == ["421 4.7.0 Too many errors, closing connection"])
        await gw.stop()
        down.stop()
    }
}
