import Testing
import NIOCore
import SMTPProtocol

/// CHUNKING (RFC 3030) in the state machine: every BDAT has its chunk read (kept or
/// thrown away) before it is answered; the same refusals as DATA; LMTP's replies.
@Suite struct ChunkingMachineTests {
    static func ready(_ configure: (inout SMTPServerConfiguration) -> Void = { _ in }) -> MachineHarness {
        var h = MachineHarness(configure)
        h.connect()
        h.send("EHLO client.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>")
        return h
    }

    @Test func chunksThenLASTDeliverTheMessage() {
        var h = Self.ready()
        #expect(h.bdat(100).map(\.summary) == ["250 2.0.0 100 octets received, 100 in all"])
        #expect(h.actions.contains(.receiveChunk(BDATCommand(size: 100, last: false))))
        #expect(h.machine.transaction?.chunked == true)
        #expect(h.bdat(50, last: true).map(\.summary) == ["250 2.0.0 Queued as X"])
        #expect(h.actions.contains { if case .deliver = $0 { return true } else { return false } })
        #expect(h.machine.transaction == nil)
        #expect(h.machine.phase == .command)
    }

    @Test func aBDATOutOfSequenceHasItsChunkThrownAwayFirst() {
        var h = MachineHarness()
        h.connect()
        h.send("EHLO client.example.net")
        let r = h.bdat(12)
        #expect(h.actions.contains(.discardChunk(BDATCommand(size: 12, last: false))))
        #expect(r.map(\.summary) == ["503 5.5.1 Need MAIL command"])
        // The reply comes only once the chunk is read.
        var g = MachineHarness()
        g.connect()
        g.send("EHLO client.example.net")
        let line = SMTPLine(bytes: ByteBuffer(string: "BDAT 12"), ending: .crlf, wireLength: 9, overflow: false, chunk: BDATCommand(size: 12, last: false))
        g.feed(.command(line))
        #expect(g.sent.last?.code == 250, "nothing is answered before the chunk is read")
        #expect(g.machine.phase == .chunk)
        #expect(!g.machine.chunkKept)
        g.feed(.chunkEnded(SMTPDataSummary()))
        #expect(g.sent.last?.summary == "503 5.5.1 Need MAIL command")
        #expect(g.machine.phase == .command)
    }

    @Test func aBDATWithoutRecipientsAndDATAAfterBDATAreRefused() {
        var h = MachineHarness()
        h.connect()
        h.send("EHLO client.example.net", "MAIL FROM:<a@example.net>")
        #expect(h.bdat(5).map(\.code) == [503])
        h.send("RCPT TO:<b@nowhere.example>")
        #expect(h.bdat(5).map(\.summary) == ["554 5.5.1 No valid recipients"])
        var g = Self.ready()
        g.bdat(10)
        #expect(g.send("DATA").map(\.summary) == ["503 5.5.1 DATA after BDAT in one transaction; send RSET"])
        #expect(g.send("RSET").map(\.code) == [250])
        #expect(g.send("MAIL FROM:<a@example.net>").map(\.code) == [250])
    }

    /// How many octets follow a BDAT the framer could not read is unknown: the session ends.
    @Test(arguments: ["BDAT", "BDAT x", "BDAT 10 NOTLAST", "bdat  12", "BDAT 1234567890123456789"])
    func aBDATWithoutAValidSizeClosesTheSession(_ line: String) {
        var h = Self.ready()
        #expect(h.send(line).map(\.summary) == ["501 5.5.4 Syntax: BDAT chunk-size [LAST]; closing"])
        #expect(h.closed == .protocolViolation)
    }

    @Test func aChunkPastMaxMessageSizeIsRefusedAndThrownAway() {
        var h = Self.ready { $0.maxMessageSize = 1000 }
        #expect(h.bdat(600).map(\.code) == [250])
        #expect(h.bdat(401).map(\.summary) == ["552 5.3.4 Message size exceeds fixed maximum message size"])
        #expect(h.actions.contains(.discardChunk(BDATCommand(size: 401, last: false))))
        #expect(h.machine.transaction == nil, "the refusal ends the transaction")
        #expect(h.decisions.last?.reason == "BDAT chunks of 600 + 401 octets exceed maxmessagesize 1000")
        // A size near Int.max cannot overflow the test.
        var g = Self.ready { $0.maxMessageSize = 1000 }
        #expect(g.bdat(999_999_999_999_999_999).map(\.code) == [552])
    }

    @Test func theTextRulesRefuseAtTheChunkThatBrokeThem() {
        var h = Self.ready()
        var s = SMTPDataSummary()
        s.size = 20
        s.problem = ("bare-lf", SMTPReply(550, "5.6.0", "Message refused: bare LF in message text (RFC 5321 2.3.8)"))
        #expect(h.bdat(20, s).map(\.code) == [550])
        #expect(h.machine.transaction == nil)
        #expect(h.actions.contains { if case .logTransaction(_, "reject", _) = $0 { return true } else { return false } })
        #expect(h.bdat(5, last: true).map(\.code) == [550], "a pipelined chunk after the refused one gets the same reply")
        #expect(h.bdat(5, last: true).map(\.code) == [503], "BDAT LAST ended the failed transaction")
    }

    /// RFC 3030 §4.2: after a refused BDAT the client's pipelined BDATs are read, thrown away
    /// and answered with the refusal, none counted as an error; BDAT LAST ends that.
    @Test func bdatsPipelinedAfterARefusedChunkAreDiscardedWithTheSameReply() {
        var h = Self.ready { $0.maxMessageSize = 100; $0.maxErrors = 2 }
        #expect(h.bdat(101).map(\.code) == [552])
        for _ in 0..<4 {
            #expect(h.bdat(50).map(\.summary) == ["552 5.3.4 Message size exceeds fixed maximum message size"])
            #expect(h.actions.contains(.discardChunk(BDATCommand(size: 50, last: false))))
        }
        #expect(h.bdat(0).map(\.code) == [552], "a BDAT 0 is answered at once")
        #expect(h.bdat(50, last: true).map(\.code) == [552])
        #expect(h.closed == nil, "six refusals, one error")
        #expect(h.machine.errors == 1)
        #expect(h.decisions.last?.result == "failed-transaction")
        #expect(h.decisions.last?.reason == "BDAT 50 LAST after a refused chunk; octets discarded (RFC 3030 4.2)")
        #expect(h.send("MAIL FROM:<a@example.net>").map(\.code) == [250])
        #expect(h.send("RCPT TO:<b@example.org>").map(\.code) == [250])
        #expect(h.bdat(10, last: true).map(\.code) == [250], "the next transaction is whole")
    }

    @Test func anyOtherCommandEndsTheFailedTransaction() {
        var h = MachineHarness()
        h.connect()
        h.send("EHLO client.example.net")
        #expect(h.bdat(10).map(\.code) == [503], "no MAIL")
        #expect(h.bdat(10).map(\.code) == [503])
        #expect(h.machine.errors == 1)
        #expect(h.send("NOOP").map(\.code) == [250])
        #expect(h.bdat(10).map(\.code) == [503])
        #expect(h.machine.errors == 2, "a BDAT after another command is a new error")
    }

    /// The discarded BDATs are bounded: past maxJunkCommands each counts, past maxErrors 421.
    @Test func endlessBDATsAfterARefusalEndTheSession() {
        var h = Self.ready { $0.maxMessageSize = 100; $0.maxErrors = 3; $0.maxJunkCommands = 5 }
        h.bdat(101)
        var sent = 0
        while h.closed == nil && sent < 100 {
            h.bdat(0)
            sent += 1
        }
        #expect(h.closed == .tooManyErrors)
        #expect(sent == 7, "EHLO and four BDATs are junk, the next two errors 2 and 3, the fourth error closes")
        #expect(h.sent.last?.code == 421)
    }

    @Test func lmtpAnswersAFailedTransactionsLASTOncePerRecipient() {
        var h = MachineHarness { $0.dialect = .lmtp; $0.maxMessageSize = 15 }
        h.connect()
        h.send("LHLO client.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>")
        #expect(h.bdat(20).map(\.code) == [552])
        #expect(h.bdat(5).map(\.code) == [552], "not the last: one reply")
        #expect(h.bdat(5, last: true).map(\.code) == [552, 552], "the last: one per recipient")
        #expect(h.send("NOOP").map(\.code) == [250])
    }

    @Test func lmtpAnswersARefusedFirstChunkThatIsLASTPerRecipient() {
        var h = MachineHarness { $0.dialect = .lmtp }
        h.connect()
        h.send("LHLO client.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>")
        h.admitRefusal = SMTPReply(451, "4.3.2", "Not now")
        #expect(h.bdat(10, last: true).map(\.summary) == ["451 4.3.2 Not now", "451 4.3.2 Not now"])
        #expect(h.machine.phase == .command)
    }

    @Test func theDataStageRefusalAnswersTheChunkThatCarriedTheHeader() {
        var h = Self.ready()
        h.refuse[.data] = SMTPReply(550, "5.7.1", "Header says no")
        h.feed(.command(SMTPLine(bytes: ByteBuffer(string: "BDAT 30"), ending: .crlf, wireLength: 9, overflow: false, chunk: BDATCommand(size: 30, last: false))))
        h.feed(.headersComplete)
        var s = SMTPDataSummary()
        s.size = 30
        h.feed(.chunkEnded(s))
        #expect(h.sent.last?.summary == "550 5.7.1 Header says no")
        #expect(h.machine.transaction == nil)
    }

    @Test func lmtpAnswersBDATLASTPerRecipientAndOtherChunksOnce() {
        var h = MachineHarness { $0.dialect = .lmtp }
        h.connect()
        h.send("LHLO client.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>")
        h.delivery = SMTPDeliveryReport(action: "partial", reply: SMTPReply(250, "2.0.0", "OK"),
                                        perRecipient: [SMTPReply(250, "2.1.5", "b ok"), SMTPReply(452, "4.2.2", "c full")])
        #expect(h.bdat(10).map(\.code) == [250])
        #expect(h.bdat(10, last: true).map(\.summary) == ["250 2.1.5 b ok", "452 4.2.2 c full"])
        var g = MachineHarness { $0.dialect = .lmtp; $0.maxMessageSize = 15 }
        g.connect()
        g.send("LHLO client.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>")
        #expect(g.bdat(10).map(\.code) == [250])
        #expect(g.bdat(10).map(\.code) == [552], "a refused chunk that is not the last gets one reply")
        g.send("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>")
        #expect(g.bdat(20, last: true).map(\.code) == [552, 552], "a refused LAST chunk answers each recipient")
    }

    @Test func textSentBeforeThe354ClosesTheSession() {
        var h = Self.ready()
        #expect(h.send("DATA").map(\.code) == [354])
        h.feed(.improperPipelining)
        #expect(h.sent.last?.summary == "554 5.5.0 Message text sent before the 354 reply (improper pipelining); closing")
        #expect(h.closed == .protocolViolation)
        #expect(h.decisions.last?.result == "improper-pipelining")
    }

    @Test func aTimeoutOrCloseInAChunkIsLoggedAsBDAT() {
        var h = Self.ready()
        h.feed(.command(SMTPLine(bytes: ByteBuffer(string: "BDAT 30"), ending: .crlf, wireLength: 9, overflow: false, chunk: BDATCommand(size: 30, last: false))))
        let actions = h.machine.handle(.closed(byServer: false, detail: nil))
        #expect(actions == [.close(.clientClosed, detail: "during BDAT; message discarded")])
        var g = Self.ready()
        g.feed(.command(SMTPLine(bytes: ByteBuffer(string: "BDAT 30"), ending: .crlf, wireLength: 9, overflow: false, chunk: BDATCommand(size: 30, last: false))))
        g.feed(.timeout)
        #expect(g.sent.last?.code == 421)
        #expect(g.decisions.last?.stage == .data)
    }
}
