import NIOCore
import SMTPProtocol

/// Drives an `SMTPServerStateMachine` the way a session does, with no socket: every stage
/// goes on unless `refuse` says otherwise, the downstream takes every message (or says
/// `delivery`), and every reply and decision is recorded.
struct MachineHarness {
    var machine: SMTPServerStateMachine
    var sent: [SMTPReply] = []
    var decisions: [SMTPDecision] = []
    var actions: [SMTPServerAction] = []
    /// A stage's refusal, by stage.
    var refuse: [Stage: SMTPReply] = [:]
    var delivery = SMTPDeliveryReport(action: "accept", reply: SMTPReply(250, "2.0.0", "Queued as X"))
    var admitRefusal: SMTPReply?
    var commitError: String?
    var openAllowed = true
    var verification: SMTPReply?
    var closed: SMTPCloseReason?
    /// The answer to every password check, and the checks asked for.
    var credentialCheck = SMTPCredentialCheck.rejected
    var checked: [SMTPCredentials] = []
    /// AUTH failures told for fail2ban.
    var failures = 0

    init(_ configure: (inout SMTPServerConfiguration) -> Void = { _ in }) {
        var c = SMTPServerConfiguration(helloName: "mx.test")
        c.clientAddress = "192.0.2.1"
        c.isLocalDomain = { $0.lowercased() == "example.org" }
        configure(&c)
        machine = SMTPServerStateMachine(configuration: c, sessionID: "s1")
    }

    /// Connects and returns the greeting's code.
    @discardableResult
    mutating func connect() -> Int {
        feed(.connected)
        return sent.last?.code ?? 0
    }

    /// Sends command lines; returns the replies they drew.
    @discardableResult
    mutating func send(_ lines: String...) -> [SMTPReply] {
        let before = sent.count
        for l in lines {
            var b = ByteBuffer(string: l)
            feed(.command(SMTPLine(bytes: b, ending: .crlf, wireLength: b.readableBytes + 2, overflow: false)))
            b.clear()
        }
        return Array(sent[before...])
    }

    /// Codes of the replies the lines drew.
    mutating func codes(_ lines: String...) -> [Int] {
        var out: [Int] = []
        for l in lines { out += send(l).map(\.code) }
        return out
    }

    /// The message, after 354: headers complete, then the end of data.
    @discardableResult
    mutating func message(_ summary: SMTPDataSummary = SMTPDataSummary()) -> [SMTPReply] {
        let before = sent.count
        feed(.headersComplete)
        feed(.dataEnded(summary))
        return Array(sent[before...])
    }

    /// `BDAT size [LAST]` as the framer hands it on, then (when the machine reads a chunk)
    /// its end: `summary`, or one with the octets sent so far in this transaction.
    @discardableResult
    mutating func bdat(_ size: Int, last: Bool = false, _ summary: SMTPDataSummary? = nil) -> [SMTPReply] {
        let before = sent.count
        let text = "BDAT \(size)\(last ? " LAST" : "")"
        let b = ByteBuffer(string: text)
        feed(.command(SMTPLine(bytes: b, ending: .crlf, wireLength: text.utf8.count + 2, overflow: false, chunk: BDATCommand(size: size, last: last))))
        if machine.phase == .chunk {
            if machine.chunkKept { chunkOctets += size }
            var s = summary ?? SMTPDataSummary()
            if summary == nil { s.size = chunkOctets }
            feed(.chunkEnded(s))
        }
        if machine.transaction == nil { chunkOctets = 0 }
        return Array(sent[before...])
    }
    var chunkOctets = 0

    mutating func feed(_ event: SMTPServerEvent) {
        var queue = machine.handle(event)
        while !queue.isEmpty {
            let a = queue.removeFirst()
            actions.append(a)
            if let answer = answer(a) { queue += machine.handle(answer) }
        }
    }

    mutating func answer(_ a: SMTPServerAction) -> SMTPServerEvent? {
        switch a {
        case .send(let r): sent.append(r)
        case .log(let d): decisions.append(d)
        case .close(let r, _): closed = r
        case .runStage(let s):
            return .stageDone(s, refuse[s].map { SMTPStageOutcome(action: $0.isTransient ? "tempfail" : "reject", reply: $0) } ?? .proceed)
        case .openTransaction: return .transactionOpened(openAllowed)
        case .verifyRecipient: return .recipientVerified(target: "smtp:down", reply: verification)
        case .admitData: return .dataAdmitted(admitRefusal, endsTransaction: admitRefusal != nil)
        case .commit: return .committed(error: commitError)
        case .deliver: return .delivered(delivery)
        case .checkCredentials(let c):
            checked.append(c)
            return .credentialsChecked(credentialCheck)
        case .authFailed: failures += 1
        case .endTransaction, .receiveData, .receiveChunk, .discardChunk, .logTransaction: break
        }
        return nil
    }
}
