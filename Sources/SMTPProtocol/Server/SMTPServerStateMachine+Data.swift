extension SMTPServerStateMachine {
    /// The most octets of header section a message may have (dropped fields included).
    public static let maxHeaderOctets = 256 * 1024
    public static let headerTooLarge = SMTPReply(552, "5.3.4", "Message header section exceeds \(maxHeaderOctets / 1024) KB; message refused")
    public static let messageTooBig = SMTPReply(552, "5.3.4", "Message size exceeds fixed maximum message size")
    static let logUnavailable = SMTPReply(451, "4.3.0", "Local error: decision log unavailable, try again later")

    // MARK: DATA

    mutating func data() -> [SMTPServerAction] {
        if let refusal = refusalBeforeMessage(.data) { return refusal }
        if transaction?.chunked == true { return badSequence("DATA after BDAT in one transaction; send RSET") }
        return awaiting(.admission, [.admitData])
    }

    /// DATA or BDAT without a transaction or without a recipient.
    mutating func refusalBeforeMessage(_ stage: Stage) -> [SMTPServerAction]? {
        guard let t = transaction else { return badSequence("Need MAIL command") }
        guard t.recipients.isEmpty else { return nil }
        if t.rcptAttempted {
            return refuse(stage, "protocol", "no-recipients", SMTPReply(554, "5.5.1", "No valid recipients"), "all RCPT commands were refused")
        }
        return badSequence("Need RCPT command")
    }

    mutating func dataAdmitted(_ refusal: SMTPReply?, endsTransaction ends: Bool) -> [SMTPServerAction] {
        let chunkCommand: BDATCommand?
        switch pending {
        case .admission: chunkCommand = nil
        case .chunkAdmission(let c): chunkCommand = c
        default: return []
        }
        answering = true
        defer { answering = false }
        if let r = refusal {
            let end: [SMTPServerAction] = ends ? [endTransaction()] : []
            let out = ready(end + reply(r, times: chunkCommand?.last == true ? lastReplies : 1))
            return chunkCommand.map { refused($0, out) } ?? out
        }
        if let c = chunkCommand {
            transaction?.chunked = true
            return receive(c)
        }
        phase = .data
        pending = .none
        return [.send(SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>")), .receiveData]
    }

    // MARK: End of data

    mutating func dataEnded(_ s: SMTPDataSummary) -> [SMTPServerAction] {
        guard phase == .data else { return [] }
        dataSummary = s
        phase = .busy
        if let refusal = contentRefusal(s) { return refusal }
        return afterContent(s)
    }

    /// The message is in: its data stage (at the end, for a message of header fields only,
    /// without a blank line), then the message stage.
    mutating func afterContent(_ s: SMTPDataSummary) -> [SMTPServerAction] {
        if !dataStageRan {
            pending = .dataStageAtEnd
            return [.runStage(.data)]
        }
        return afterDataStage(s)
    }

    /// The message refused for what the intake found (not SMTP text, header section too
    /// large, the spool failing); `single` for one reply where LMTP would give one each.
    mutating func contentRefusal(_ s: SMTPDataSummary, single: Bool = false) -> [SMTPServerAction]? {
        if let p = s.problem {
            return finish(p.reply, action: "reject", single: single,
                          [.log(decision(.message, "data", p.name, "reject", p.reply, "message text is not valid SMTP; nothing forwarded"))])
        }
        if s.headerTooLarge {
            let r = Self.headerTooLarge
            return finish(r, action: "reject", single: single, [.log(decision(.message, "limits", "header-too-large", "reject", r,
                                                                              "header section over \(Self.maxHeaderOctets) octets; nothing forwarded"))])
        }
        if let e = s.spoolError {
            return finish(.localError, action: "tempfail", single: single,
                          [.log(decision(.message, "spool", "error", "tempfail", .localError, "spool write failed: \(e)"))])
        }
        return nil
    }

    mutating func afterDataStage(_ s: SMTPDataSummary) -> [SMTPServerAction] {
        if let d = dataOutcome, let r = d.reply { return finish(r, action: d.action) }
        pending = .messageStage
        return [.runStage(.message)]
    }

    mutating func messageDone(_ o: SMTPStageOutcome) -> [SMTPServerAction] {
        if let r = o.reply { return finish(r, action: o.action) }
        transaction?.headers += o.headers
        if dataSummary.truncated {
            // Never forward a message that was not kept whole, whatever the checks said.
            let r = Self.messageTooBig
            return finish(r, action: "reject", [.log(decision(.message, "size", "oversize", "reject", r,
                                                              "message exceeds maxmessagesize \(configuration.maxMessageSize)"))])
        }
        guard let t = transaction else { return ready([]) }
        pending = .commit
        return [.commit(t)]
    }

    mutating func committed(error: String?) -> [SMTPServerAction] {
        guard pending == .commit, let t = transaction else { return [] }
        if let e = error {
            let r = Self.logUnavailable
            return finish(r, action: "tempfail", [.log(decision(.message, "log", "error", "tempfail", r,
                                                                "decision could not be made durable: \(e); nothing forwarded"))])
        }
        pending = .delivery
        return [.deliver(t)]
    }

    mutating func delivered(_ report: SMTPDeliveryReport) -> [SMTPServerAction] {
        guard pending == .delivery else { return [] }
        return finish(report.reply, action: report.action, perRecipient: report.perRecipient)
    }

    /// The answer to the message: the transaction logged and ended, then the reply (one per
    /// recipient in LMTP, unless `single`: a refused BDAT chunk that is not the last gets one).
    /// It is never replaced by 421; a refusal counts as an error.
    mutating func finish(_ r: SMTPReply, action: String, single: Bool = false, _ before: [SMTPServerAction] = [],
                         perRecipient: [SMTPReply]? = nil) -> [SMTPServerAction] {
        guard let t = transaction else { return ready(before) }
        var out = before + [.logTransaction(t, action: action, reply: r), endTransaction()]
        if action == "accept" { errors = 0; junk = 0 }
        let replies: [SMTPReply]
        if configuration.dialect == .lmtp && !single {
            let each = perRecipient ?? []
            replies = t.recipients.indices.map { $0 < each.count ? each[$0] : r }
        } else {
            replies = [r]
        }
        for reply in replies { out.append(.send(reply)) }
        // One refused message is one error, however many recipients it had.
        if replies.contains(where: { $0.code >= 500 }) { errors += 1 }
        return ready(out)
    }
}
