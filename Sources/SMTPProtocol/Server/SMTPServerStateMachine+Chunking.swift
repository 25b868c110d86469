/// CHUNKING (RFC 3030): the message in BDAT chunks instead of DATA. The framer has read
/// the BDAT line and hands on exactly its chunk's octets after it, so every BDAT the
/// machine answers has its chunk read first, kept or thrown away: a refused BDAT's data is
/// never taken for commands.
///
/// A refused BDAT that is not the last fails the transaction (RFC 3030 §4.2): the BDATs
/// the client had already pipelined behind it have their octets thrown away and get the
/// same reply, without counting as errors (but as junk commands, so they are bounded);
/// the BDAT LAST (in LMTP answered once per recipient) or any other command ends that.
extension SMTPServerStateMachine {
    /// A transaction whose chunk was refused: the reply every later BDAT gets, and how many
    /// times the BDAT LAST gets it.
    struct FailedChunks: Sendable, Equatable {
        var reply: SMTPReply
        var lastReplies: Int
    }

    static func chunkReceived(_ octets: Int, total: Int) -> SMTPReply {
        SMTPReply(250, "2.0.0", "\(octets) octets received, \(total) in all")
    }

    mutating func bdat(_ c: BDATCommand) -> [SMTPServerAction] {
        if let f = failedChunks { return discardFailed(c, f) }
        // LMTP answers the BDAT LAST once per recipient (RFC 2033 §4.2), a refusal too.
        lastReplies = configuration.dialect == .lmtp ? max(1, transaction?.recipients.count ?? 0) : 1
        if let refusal = refusalBeforeMessage(.data) { return refused(c, refusal) }
        guard transaction?.chunked == true else {
            // The first chunk: may the message begin (as for DATA)?
            return awaiting(.chunkAdmission(c), [.admitData])
        }
        return receive(c)
    }

    /// Reads the chunk into the message, unless it would take the message past maxMessageSize:
    /// then the message is refused and the chunk thrown away.
    mutating func receive(_ c: BDATCommand) -> [SMTPServerAction] {
        let max = configuration.maxMessageSize
        let sofar = transaction?.chunkOctets ?? 0
        if max > 0 && c.size > max - sofar {
            let r = Self.messageTooBig
            let out = finish(r, action: "reject", single: !c.last, [.log(decision(.message, "size", "oversize", "reject", r,
                                                                                 "BDAT chunks of \(sofar) + \(c.size) octets exceed maxmessagesize \(max)"))])
            return refused(c, out)
        }
        // Sizes have at most 18 digits, so only a client sending exabytes could overflow.
        let (total, overflow) = sofar.addingReportingOverflow(c.size)
        transaction?.chunkOctets = overflow ? Int.max : total
        chunk = c
        chunkKept = true
        phase = .chunk
        pending = .none
        return [.receiveChunk(c)]
    }

    /// A BDAT refused with `actions`: its chunk thrown away and, unless it was the last,
    /// the transaction failed for the BDATs pipelined behind it.
    mutating func refused(_ c: BDATCommand, _ actions: [SMTPServerAction]) -> [SMTPServerAction] {
        failing(c, discarding(c, actions))
    }

    /// Enters the failed-transaction state after a refused chunk that is not the last.
    mutating func failing(_ c: BDATCommand, _ actions: [SMTPServerAction]) -> [SMTPServerAction] {
        let replies = actions + afterChunk
        guard !c.last, phase != .closed,
              let r = replies.last(where: { if case .send = $0 { return true } else { return false } }),
              case .send(let reply) = r else { return actions }
        failedChunks = FailedChunks(reply: reply, lastReplies: lastReplies)
        return actions
    }

    /// A BDAT after a refused chunk: its octets thrown away, the refusal repeated.
    mutating func discardFailed(_ c: BDATCommand, _ f: FailedChunks) -> [SMTPServerAction] {
        junk += 1
        if junk > configuration.maxJunkCommands {
            errors += 1
            if errors > configuration.maxErrors {
                return [.log(decision(.data, "protocol", "junk-commands", "tempfail", .tooManyErrors,
                                      "more than \(configuration.maxJunkCommands) BDAT commands after a refused chunk"))]
                    + closeForErrors()
            }
        }
        if c.last { failedChunks = nil }
        let replies = Array(repeating: SMTPServerAction.send(f.reply), count: c.last ? f.lastReplies : 1)
        return discarding(c, [.log(decision(.data, "protocol", "failed-transaction", f.reply.isTransient ? "tempfail" : "reject", f.reply,
                                            "BDAT \(c.size)\(c.last ? " LAST" : "") after a refused chunk; octets discarded (RFC 3030 4.2)"))]
                                 + replies)
    }

    /// Answers a BDAT whose chunk is not taken: everything but the replies now, the replies
    /// once the chunk's octets are read. A session that closes (too many errors) reads no more.
    mutating func discarding(_ c: BDATCommand, _ actions: [SMTPServerAction]) -> [SMTPServerAction] {
        let closes = actions.contains { if case .close = $0 { return true } else { return false } }
        if closes || c.size == 0 || phase == .closed { return actions }
        let isReply: (SMTPServerAction) -> Bool = { if case .send = $0 { return true } else { return false } }
        afterChunk = actions.filter(isReply)
        chunk = c
        chunkKept = false
        phase = .chunk
        pending = .none
        return actions.filter { !isReply($0) } + [.discardChunk(c)]
    }

    mutating func chunkEnded(_ s: SMTPDataSummary) -> [SMTPServerAction] {
        guard phase == .chunk, let c = chunk else { return [] }
        chunk = nil
        guard chunkKept else {
            let replies = afterChunk
            afterChunk = []
            return ready(replies)
        }
        dataSummary = s
        phase = .busy
        if let refusal = contentRefusal(s, single: !c.last) { return failing(c, refusal) }
        if let d = dataOutcome, let r = d.reply { return failing(c, finish(r, action: d.action, single: !c.last)) }
        guard c.last else { return ready([.send(Self.chunkReceived(c.size, total: transaction?.chunkOctets ?? c.size))]) }
        return afterContent(s)
    }
}
