import Testing
import NIOCore
import SMTPProtocol

/// The state machine without a socket: every state × command of RFC 5321 §4.3.2,
/// pipelining, limits, relay, the end of data and LMTP.
@Suite struct SMTPServerStateMachineTests {
    enum Where: Int, CaseIterable, CustomStringConvertible {
        case greeted, afterEHLO, afterMAIL, afterRCPT
        var description: String { ["greeted", "after EHLO", "after MAIL", "after RCPT"][rawValue] }
        var setup: [String] {
            switch self {
            case .greeted: return []
            case .afterEHLO: return ["EHLO client.example.net"]
            case .afterMAIL: return ["EHLO client.example.net", "MAIL FROM:<a@example.net>"]
            case .afterRCPT: return ["EHLO client.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>"]
            }
        }
    }

    /// Command → the reply code in each state (greeted, after EHLO, after MAIL, after RCPT).
    static let table: [(String, [Int])] = [
        ("HELO client.example.net", [250, 250, 250, 250]),
        ("EHLO client.example.net", [250, 250, 250, 250]),
        ("MAIL FROM:<c@example.net>", [503, 250, 503, 503]),
        ("RCPT TO:<d@example.org>", [503, 503, 250, 250]),
        ("DATA", [503, 503, 503, 354]),
        ("RSET", [250, 250, 250, 250]),
        ("NOOP", [250, 250, 250, 250]),
        ("QUIT", [221, 221, 221, 221]),
        ("VRFY d", [252, 252, 252, 252]),
        ("EXPN list", [502, 502, 502, 502]),
        ("HELP", [214, 214, 214, 214]),
        ("STARTTLS", [502, 502, 502, 502]),
        ("AUTH PLAIN", [502, 502, 502, 502]),
        ("LHLO client.example.net", [500, 500, 500, 500]),
        ("XYZZY", [500, 500, 500, 500]),
        ("MAIL FROM:<broken", [501, 501, 501, 501]),
    ]

    @Test(arguments: Where.allCases)
    func everyCommandInEveryState(_ w: Where) {
        for (command, codes) in Self.table {
            var h = MachineHarness()
            #expect(h.connect() == 220)
            for s in w.setup { let ok = h.send(s).allSatisfy { $0.isPositive }; #expect(ok, "\(s)") }
            let got = h.send(command).map(\.code)
            #expect(got == [codes[w.rawValue]], "\(command) \(w)")
            #expect((h.machine.phase == .closed) == (command == "QUIT"), "\(command) \(w)")
        }
    }

    @Test func aHELOAfterMAILEndsTheTransaction() {
        var h = MachineHarness()
        h.connect()
        h.send("EHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>")
        #expect(h.machine.transaction != nil)
        h.send("HELO b.example")
        #expect(h.machine.transaction == nil)
        #expect(h.actions.contains(.endTransaction))
        #expect(h.codes("RCPT TO:<b@example.org>") == [503])
    }

    @Test func pipelinedCommandsAreAnsweredInOrder() {
        var h = MachineHarness()
        h.connect()
        let r = h.send("EHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<x@elsewhere.example>",
                       "RCPT TO:<c@example.org>", "DATA")
        #expect(r.map(\.code) == [250, 250, 250, 550, 250, 354])
        #expect(h.machine.phase == .data)
        #expect(h.machine.transaction?.recipients.map(\.description) == ["b@example.org", "c@example.org"])
        let end = h.message()
        #expect(end.map(\.summary) == ["250 2.0.0 Queued as X"])
        #expect(h.machine.phase == .command)
        #expect(h.machine.errors == 0, "an accepted message resets the error count")
    }

    @Test func theEHLOReplyAdvertisesOnlyWhatIsHonoured() {
        var h = MachineHarness { $0.maxMessageSize = 1_048_576 }
        h.connect()
        let r = h.send("EHLO a.example")[0]
        #expect(r.lines == ["mx.test Hello a.example [192.0.2.1]", "PIPELINING", "SIZE 1048576", "8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES", "SMTPUTF8", "HELP"])
        #expect(!r.lines.contains { $0.hasPrefix("STARTTLS") || $0.hasPrefix("AUTH") || $0.hasPrefix("BINARYMIME") })
    }

    @Test func refusedCommandsPastTheLimitClose() {
        var h = MachineHarness { $0.maxErrors = 3 }
        h.connect()
        #expect(h.codes("XYZZY", "XYZZY", "XYZZY") == [500, 500, 500])
        #expect(h.send("XYZZY").map(\.summary) == ["421 4.7.0 Too many errors, closing connection"])
        #expect(h.closed == .tooManyErrors)
        #expect(h.decisions.last?.result == "too-many-errors")
        #expect(h.send("NOOP").isEmpty, "nothing is read after the close")
    }

    @Test func junkCommandsCountAsErrorsPastTheirLimit() {
        var h = MachineHarness { $0.maxErrors = 2; $0.maxJunkCommands = 5 }
        h.connect()
        for _ in 0..<5 { #expect(h.codes("NOOP") == [250]) }
        #expect(h.codes("NOOP", "NOOP") == [250, 250])
        #expect(h.send("NOOP").map(\.code) == [421])
        #expect(h.decisions.contains { $0.result == "junk-commands" })
    }

    @Test func temporaryRefusalsDoNotCount() {
        var h = MachineHarness { $0.maxErrors = 1; $0.maxRecipients = 1 }
        h.connect()
        h.send("EHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>")
        #expect(h.codes("RCPT TO:<c@example.org>", "RCPT TO:<d@example.org>", "RCPT TO:<e@example.org>") == [452, 452, 452])
        #expect(h.machine.phase == .command)
        #expect(h.decisions.last?.check == "limits")
    }

    @Test func relayIsRefusedForEveryAddressFormUnlessTrusted() {
        for to in ["x@elsewhere.example", "b%elsewhere.example@example.org", "b!elsewhere.example@example.org", "b@elsewhere.example@example.org"] {
            var h = MachineHarness()
            h.connect()
            h.send("EHLO a.example", "MAIL FROM:<a@example.net>")
            let r = h.send("RCPT TO:<\(to)>")
            #expect(r.first?.code == 550 || r.first?.code == 501 || r.first?.code == 553, "\(to): \(r)")
            #expect(h.machine.transaction?.recipients.isEmpty == true, "\(to)")
        }
        var t = MachineHarness { $0.clientTrusted = true }
        t.connect()
        t.send("EHLO a.example", "MAIL FROM:<a@example.net>")
        #expect(t.codes("RCPT TO:<x@elsewhere.example>") == [250])
        #expect(t.decisions.last?.result == "authorized")
    }

    @Test func aRefusedRecipientAtVerificationIsNotTaken() {
        var h = MachineHarness { $0.verifyRecipients = true }
        h.verification = SMTPReply(550, "5.1.1", "No such user")
        h.connect()
        h.send("EHLO a.example", "MAIL FROM:<a@example.net>")
        #expect(h.send("RCPT TO:<nobody@example.org>").map(\.summary) == ["550 5.1.1 No such user"])
        #expect(h.decisions.last?.check == "downstream")
        #expect(h.codes("DATA") == [554])
    }

    @Test func connectRefusalsEndTheSession() {
        var r = MachineHarness()
        r.refuse[.connect] = SMTPReply(554, "5.7.1", "Listed")
        #expect(r.connect() == 554)
        #expect(r.closed == .connectRejected)
        var t = MachineHarness()
        t.refuse[.connect] = SMTPReply(451, "4.7.1", "Try later")
        #expect(t.connect() == 421)
        #expect(t.sent.last?.summary == "421 4.7.1 Try later")
    }

    @Test func theGatewayShuttingDownRefusesANewTransaction() {
        var h = MachineHarness()
        h.openAllowed = false
        h.connect()
        h.send("EHLO a.example")
        #expect(h.send("MAIL FROM:<a@example.net>").map(\.summary) == ["421 4.3.2 Service shutting down, try again later"])
        #expect(h.closed == .shutdown)
    }

    @Test func aTimeoutIs421AndCloses() {
        var h = MachineHarness()
        h.connect()
        h.feed(.timeout)
        #expect(h.sent.last?.summary == "421 4.4.2 Timeout exceeded, closing connection")
        #expect(h.closed == .timeout)
    }

    @Test func theEndOfDataRefusesWhatWasNotKeptWhole() {
        func run(_ s: SMTPDataSummary, commitError: String? = nil) -> (String?, SMTPDecision?) {
            var h = MachineHarness { $0.maxMessageSize = 100 }
            h.commitError = commitError
            h.connect()
            h.send("EHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "DATA")
            let r = h.message(s)
            #expect(!h.actions.contains { if case .deliver = $0 { return true } else { return false } } || commitError == nil && s == SMTPDataSummary())
            return (r.last?.summary, h.decisions.last)
        }
        var truncated = SMTPDataSummary()
        truncated.truncated = true
        #expect(run(truncated).0 == "552 5.3.4 Message size exceeds fixed maximum message size")
        var bare = SMTPDataSummary()
        bare.problem = ("bare-lf", SMTPReply(550, "5.6.0", "bare LF"))
        #expect(run(bare).0 == "550 5.6.0 bare LF")
        var big = SMTPDataSummary()
        big.headerTooLarge = true
        #expect(run(big).0?.hasPrefix("552 5.3.4 Message header section exceeds") == true)
        var spool = SMTPDataSummary()
        spool.spoolError = "No space left on device"
        #expect(run(spool).0 == "451 4.3.0 Local error in processing, try again later")
        let (r, d) = run(SMTPDataSummary(), commitError: "disk full")
        #expect(r == "451 4.3.0 Local error: decision log unavailable, try again later")
        #expect(d?.check == "log")
    }

    @Test func aDataStageRefusalIsAnsweredAtTheEndOfData() {
        var h = MachineHarness()
        h.refuse[.data] = SMTPReply(550, "5.7.1", "Spam")
        h.connect()
        h.send("EHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "DATA")
        #expect(h.message().map(\.summary) == ["550 5.7.1 Spam"])
        #expect(!h.actions.contains { if case .runStage(.message) = $0 { return true } else { return false } })
        #expect(h.actions.contains { if case .logTransaction(_, "reject", _) = $0 { return true } else { return false } })
    }

    @Test func lmtpSpeaksLHLOAndAnswersEachRecipient() {
        var h = MachineHarness { $0.dialect = .lmtp }
        #expect(h.connect() == 220)
        #expect(h.sent.last?.lines.first?.contains("LMTP") == true)
        #expect(h.send("EHLO a.example").map(\.summary) == ["500 5.5.1 This is an LMTP server: use LHLO"])
        #expect(h.codes("HELO a.example") == [500])
        #expect(h.codes("LHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>", "DATA")
                == [250, 250, 250, 250, 354])
        h.delivery = SMTPDeliveryReport(action: "accept", reply: SMTPReply(250, "2.0.0", "ok"),
                                        perRecipient: [SMTPReply(250, "2.0.0", "b ok"), SMTPReply(452, "4.2.2", "c over quota")])
        #expect(h.message().map(\.summary) == ["250 2.0.0 b ok", "452 4.2.2 c over quota"])
        // A refusal of the whole message is one reply per recipient, too.
        h.refuse[.message] = SMTPReply(550, "5.7.1", "Spam")
        h.send("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>", "DATA")
        #expect(h.message().map(\.summary) == ["550 5.7.1 Spam", "550 5.7.1 Spam"])
    }

    @Test func anOverlongCommandLineIsRefused() {
        var h = MachineHarness()
        h.connect()
        let b = ByteBuffer(string: "NOOP")
        h.feed(.command(SMTPLine(bytes: b, ending: .crlf, wireLength: 5000, overflow: true)))
        #expect(h.sent.last?.summary == "500 5.5.2 Line too long")
        #expect(h.decisions.last?.result == "line-too-long")
    }

    @Test func anotherProtocolIsToldAndClosed() {
        var h = MachineHarness()
        h.connect()
        #expect(h.codes("GET / HTTP/1.1") == [421])
        #expect(h.closed == .forbiddenCommand)
    }

    @Test func dsnIsAdvertisedAndItsParametersKeptOnlyWhenOffered() {
        var h = MachineHarness { $0.offersDSN = true }
        h.connect()
        #expect(h.send("EHLO a.example")[0].lines.contains("DSN"))
        #expect(h.codes("MAIL FROM:<a@example.net> RET=HDRS ENVID=x1", "RCPT TO:<b@example.org> NOTIFY=FAILURE ORCPT=rfc822;b@example.org",
                        "RCPT TO:<c@example.org>") == [250, 250, 250])
        #expect(h.machine.transaction?.parameters.ret == "HDRS")
        #expect(h.machine.transaction?.recipientParameters.map(\.notify) == ["FAILURE", nil])
        var off = MachineHarness()
        off.connect()
        #expect(!off.send("EHLO a.example")[0].lines.contains("DSN"))
        #expect(off.codes("MAIL FROM:<a@example.net> RET=HDRS") == [555])
        var helo = MachineHarness { $0.offersDSN = true }
        helo.connect()
        helo.send("HELO a.example")
        #expect(helo.codes("MAIL FROM:<a@example.net> ENVID=x1") == [555], "DSN parameters need EHLO")
    }

    @Test func policyRefusalsCountAsErrors() {
        var h = MachineHarness { $0.maxErrors = 2 }
        h.refuse[.rcpt] = SMTPReply(550, "5.7.1", "Listed")
        h.connect()
        h.send("EHLO a.example", "MAIL FROM:<a@example.net>")
        #expect(h.codes("RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>") == [550, 550])
        #expect(h.send("RCPT TO:<d@example.org>").map(\.summary) == ["421 4.7.0 Too many errors, closing connection"])
        var v = MachineHarness { $0.maxErrors = 1; $0.verifyRecipients = true }
        v.verification = SMTPReply(550, "5.1.1", "No such user")
        v.connect()
        v.send("EHLO a.example", "MAIL FROM:<a@example.net>")
        #expect(v.codes("RCPT TO:<x@example.org>", "RCPT TO:<y@example.org>") == [550, 421], "address harvesting is bounded")
    }

    @Test func aMessageWithoutABlankLineStillRunsItsDataStage() {
        var h = MachineHarness()
        h.refuse[.data] = SMTPReply(550, "5.7.1", "Bad headers")
        h.connect()
        h.send("EHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "DATA")
        h.feed(.dataEnded(SMTPDataSummary()))
        #expect(h.sent.last?.summary == "550 5.7.1 Bad headers")
        #expect(h.actions.contains(.runStage(.data)))
    }

    @Test func anLMTPMessageRefusedForManyRecipientsIsOneError() {
        var h = MachineHarness { $0.dialect = .lmtp; $0.maxErrors = 1 }
        h.refuse[.message] = SMTPReply(550, "5.7.1", "Spam")
        h.connect()
        h.send("LHLO a.example", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>", "RCPT TO:<d@example.org>", "DATA")
        #expect(h.message().count == 3)
        #expect(h.machine.errors == 1)
        #expect(h.codes("NOOP") == [250])
    }

    @Test func recipientParametersNeedEHLO() {
        var h = MachineHarness { $0.offersDSN = true }
        h.connect()
        h.send("HELO a.example", "MAIL FROM:<a@example.net>")
        #expect(h.send("RCPT TO:<b@example.org> NOTIFY=NEVER").map(\.summary) == ["555 5.5.4 RCPT parameters require EHLO"])
    }

    @Test func aTimeoutIsLoggedBeforeItsReplyIsTried() {
        var h = MachineHarness()
        h.connect()
        h.actions = []
        h.feed(.timeout)
        guard case .log = h.actions.first else { Issue.record("\(h.actions)"); return }
    }
}
