import Foundation
import Testing
@testable import Gateway

/// CHUNKING (RFC 3030) through real sockets: BDAT messages forwarded whole and unstuffed,
/// a refused BDAT's octets read and never run as commands, BDAT lines inside DATA taken as
/// text, the same bare-LF and size rules as DATA, and message text pipelined before the
/// 354 refused.
@Suite(.serialized) struct ChunkingTests {
    static let envelope: [(String?, Int)] = [("EHLO client.example.net\r\n", 1), ("MAIL FROM:<a@example.net>\r\n", 1),
                                             ("RCPT TO:<b@example.org>\r\n", 1)]

    static func bdat(_ text: String, last: Bool = false) -> String {
        "BDAT \(text.utf8.count)\(last ? " LAST" : "")\r\n\(text)"
    }

    static func deliveredText(_ down: RecordingDownstream) -> String {
        String(decoding: down.messages.first?.data ?? [], as: UTF8.self)
    }

    @Test func aMessageInChunksIsForwardedWholeAndAsSent() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let first = "Subject: chunked\r\nMessage-ID: <c1@example.net>\r\n\r\nHel"
        let second = "lo.\r\n.a line that starts with a dot\r\n"
        let r = try await Client.raw(port: gw.port, Self.envelope + [(Self.bdat(first), 1), (Self.bdat(second, last: true), 1), ("QUIT\r\n", 1)])
        #expect(r.replies[0].first?.contains("\n250-CHUNKING\n") == true, "\(r.replies[0])")
        #expect(r.replies[3] == ["250 2.0.0 \(first.utf8.count) octets received, \(first.utf8.count) in all"])
        #expect(r.replies[4].first?.hasPrefix("250 2.0.0 Ok: queued as TEST") == true, "\(r.replies)")
        let text = Self.deliveredText(down)
        #expect(text.hasSuffix("Subject: chunked\r\nMessage-ID: <c1@example.net>\r\n\r\nHello.\r\n.a line that starts with a dot\r\n"), "\(text)")
        let records = try await gw.records(waitingFor: "session.close")
        let txn = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(txn["chunked"] as? Bool == true)
        #expect(txn["size"] as? Int == first.utf8.count + second.utf8.count)
        #expect(txn["message_id"] as? String == "<c1@example.net>")
        await gw.stop()
        down.stop()
    }

    @Test func pipelinedChunksAreAnsweredInOrderAndALastLineGetsItsCRLF() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let all = "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n" + Self.bdat("Subject: p\r\n\r\n") + Self.bdat("no final CRLF")
            + "BDAT 0 LAST\r\n"
        let r = try await Client.raw(port: gw.port, [("EHLO client.example.net\r\n", 1), (all, 5), ("QUIT\r\n", 1)])
        let codes = r.replies[1].map { $0.prefix(3) }
        #expect(codes == ["250", "250", "250", "250", "250"], "\(r.replies)")
        #expect(Self.deliveredText(down).hasSuffix("Subject: p\r\n\r\nno final CRLF\r\n"), "\(Self.deliveredText(down))")
        await gw.stop()
        down.stop()
    }

    /// RFC 3030: a refused BDAT's data is still read. Here it looks like commands; none of
    /// them runs.
    @Test func aRefusedChunkIsReadAndNeverRunAsCommands() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let smuggled = "MAIL FROM:<x@example.net>\r\nRCPT TO:<b@example.org>\r\nQUIT\r\n"
        let r = try await Client.raw(port: gw.port, [("EHLO client.example.net\r\n", 1), (Self.bdat(smuggled), 1), ("NOOP\r\n", 1),
                                                     ("QUIT\r\n", 1)])
        #expect(r.replies[1] == ["503 5.5.1 Need MAIL command"])
        #expect(r.replies[2] == ["250 2.0.0 OK"])
        #expect(r.replies[3].first?.hasPrefix("221") == true)
        let records = try await gw.records(waitingFor: "session.close")
        #expect(!records.contains { $0["event"] as? String == "transaction" })
        await gw.stop()
        down.stop()
    }

    @Test func aBDATLineInsideDATAIsMessageText() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let text = "Subject: d\r\n\r\nBDAT 7\r\nxxxxx\r\nQUIT\r\n.\r\n"
        let r = try await Client.raw(port: gw.port, Self.envelope + [("DATA\r\n", 1), (text, 1), ("NOOP\r\n", 1), ("QUIT\r\n", 1)])
        #expect(r.replies[4].first?.hasPrefix("250 2.0.0 Ok: queued as TEST") == true, "\(r.replies)")
        #expect(r.replies[5] == ["250 2.0.0 OK"])
        #expect(Self.deliveredText(down).hasSuffix("Subject: d\r\n\r\nBDAT 7\r\nxxxxx\r\nQUIT\r\n"))
        await gw.stop()
        down.stop()
    }

    @Test func chunksFollowTheSameTextRulesAsDATA() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        // A bare LF in the first chunk refuses the message at once; the next chunk is read,
        // not run, and gets the same refusal (RFC 3030 4.2); after it DATA has no transaction.
        let r = try await Client.raw(port: gw.port, Self.envelope + [(Self.bdat("Subject: x\r\n\r\nhi\n.\n"), 1),
                                                                    (Self.bdat("RSET\r\n", last: true), 1), ("DATA\r\n", 1)])
        let bareLF = "550 5.6.0 Message refused: bare LF in message text (RFC 5321 2.3.8)"
        #expect(r.replies[3] == [bareLF], "\(r.replies)")
        #expect(r.replies[4] == [bareLF])
        #expect(r.replies[5] == ["503 5.5.1 Need MAIL command"])
        #expect(down.messages.isEmpty)
        await gw.stop()
        down.stop()
    }

    @Test func DATAafterBDATAndAChunkPastTheSizeLimitAreRefused() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.listeners[0].maxmessagesize = 1 }
        let big = String(repeating: "x", count: 1098) + "\r\n"
        let r = try await Client.raw(port: gw.port, Self.envelope + [(Self.bdat("Subject: s\r\n\r\n"), 1), ("DATA\r\n", 1),
                                                                    (Self.bdat(big), 1), ("RSET\r\n", 1)])
        #expect(r.replies[3].first?.hasPrefix("250 2.0.0 14 octets received") == true, "\(r.replies)")
        #expect(r.replies[4] == ["503 5.5.1 DATA after BDAT in one transaction; send RSET"])
        #expect(r.replies[5] == ["552 5.3.4 Message size exceeds fixed maximum message size"])
        #expect(r.replies[6] == ["250 2.0.0 Reset OK"])
        #expect(down.messages.isEmpty)
        let records = try await gw.records(waitingFor: "session.close")
        let refusal = try #require(records.first { $0["check"] as? String == "size" && $0["action"] as? String == "reject" })
        #expect((refusal["reason"] as? String)?.contains("BDAT chunks of 14 + 1100 octets exceed maxmessagesize 1024") == true, "\(refusal)")
        await gw.stop()
        down.stop()
    }

    /// RFC 3030 §4.2: the client may have pipelined more BDATs behind the refused one; they
    /// are read, thrown away and get the same reply, and the session goes on.
    @Test func bdatsPipelinedBehindARefusedChunkGetItsReply() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.listeners[0].maxmessagesize = 1 }
        let big = String(repeating: "x", count: 1098) + "\r\n"
        let pipelined = Self.bdat(big) + Self.bdat("RSET\r\nQUIT\r\n") + Self.bdat("end\r\n", last: true)
        let r = try await Client.raw(port: gw.port, Self.envelope + [(pipelined, 3), ("NOOP\r\n", 1)])
        let tooBig = "552 5.3.4 Message size exceeds fixed maximum message size"
        #expect(r.replies[3] == [tooBig, tooBig, tooBig], "\(r.replies)")
        #expect(r.replies[4] == ["250 2.0.0 OK"])
        #expect(down.messages.isEmpty)
        let records = try await gw.records(waitingFor: "session.close")
        let discarded = records.filter { $0["result"] as? String == "failed-transaction" }
        #expect(discarded.compactMap { $0["reason"] as? String } == ["BDAT 12 after a refused chunk; octets discarded (RFC 3030 4.2)",
                                                                      "BDAT 5 LAST after a refused chunk; octets discarded (RFC 3030 4.2)"])
        await gw.stop()
        down.stop()
    }

    /// The size limit counts what the client sent: a last line without CRLF adds none.
    @Test func aMessageOfExactlyMaxMessageSizeWithoutAFinalCRLFIsAccepted() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.listeners[0].maxmessagesize = 1 }
        let head = "Subject: exact\r\n\r\n"
        let body = String(repeating: String(repeating: "y", count: 98) + "\r\n", count: 9) + String(repeating: "z", count: 1024 - 900 - head.utf8.count)
        let r = try await Client.raw(port: gw.port, Self.envelope + [(Self.bdat(head), 1), (Self.bdat(body, last: true), 1)])
        #expect(r.replies[4].first?.hasPrefix("250 2.0.0 Ok: queued as TEST") == true, "\(r.replies)")
        #expect(Self.deliveredText(down).hasSuffix(head + body + "\r\n"))
        await gw.stop()
        down.stop()
    }

    /// RFC 2920: DATA ends a pipelined group; text sent before the 354 is refused (a client
    /// that does not wait may frame its message differently from us).
    @Test func messageTextBeforeThe354IsRefused() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.raw(port: gw.port, Self.envelope + [("DATA\r\nSubject: early\r\n\r\nhi\r\n.\r\n", 2)])
        #expect(r.replies[3] == ["354 End data with <CR><LF>.<CR><LF>",
                                 "554 5.5.0 Message text sent before the 354 reply (improper pipelining); closing"], "\(r.replies)")
        #expect(down.messages.isEmpty)
        let records = try await gw.records(waitingFor: "session.close")
        #expect(records.contains { $0["result"] as? String == "improper-pipelining" && $0["action"] as? String == "reject" })
        #expect(records.last { $0["event"] as? String == "session.close" }?["reason"] as? String == "protocol-violation")
        await gw.stop()
        down.stop()
    }

    @Test func anLMTPListenerAnswersBDATLASTOncePerRecipient() async throws {
        let down = try await RecordingDownstream.start(.rejectDataFor("c@example.org", "552 5.2.2 <c@example.org> mailbox full"), lmtp: true)
        let gw = try await TestGateway(downstream: ["lmtp:127.0.0.1:\(down.port)"]) { $0.listeners[0].protocol = "lmtp" }
        let r = try await Client.raw(port: gw.port, [("LHLO client.example.net\r\n", 1), ("MAIL FROM:<a@example.net>\r\n", 1),
                                                     ("RCPT TO:<b@example.org>\r\n", 1), ("RCPT TO:<c@example.org>\r\n", 1),
                                                     (Self.bdat("Subject: l\r\n\r\n"), 1), (Self.bdat("body\r\n", last: true), 2)])
        #expect(r.replies[4].first?.hasPrefix("250 2.0.0 14 octets received") == true, "\(r.replies)")
        #expect(r.replies[5] == ["250 2.1.5 <b@example.org> delivered", "552 5.2.2 <c@example.org> mailbox full"])
        #expect(down.messages.first?.rcpts == ["b@example.org"])
        await gw.stop()
        down.stop()
    }
}
