/// CHUNKING (RFC 3030): the message in BDAT chunks instead of DATA. The framer has read
/// the BDAT line and hands on exactly its chunk's octets after it, so every BDAT the
/// machine answers has its chunk read first, kept or thrown away: a refused BDAT's data is
/// never taken for commands.
extension SMTPServerStateMachine {
    static func chunkReceived(_ octets: Int, total: Int) -> SMTPReply {
        SMTPReply(250, "2.0.0", "\(octets) octets received, \(total) in all")
    }

    mutating func bdat(_ c: BDATCommand) -> [SMTPServerAction] {
        if let refusal = refusalBeforeMessage(.data) { return discarding(c, refusal) }
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
            return discarding(c, out)
        }
        transaction?.chunkOctets = sofar + c.size
        chunk = c
        chunkKept = true
        phase = .chunk
        pending = .none
        return [.receiveChunk(c)]
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
        if let refusal = contentRefusal(s, single: !c.last) { return refusal }
        if let d = dataOutcome, let r = d.reply { return finish(r, action: d.action, single: !c.last) }
        guard c.last else { return ready([.send(Self.chunkReceived(c.size, total: transaction?.chunkOctets ?? c.size))]) }
        return afterContent(s)
    }
}
