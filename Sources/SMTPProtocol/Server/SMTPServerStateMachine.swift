/// One SMTP or LMTP server session as a pure state machine (after postgres-nio's
/// `ConnectionStateMachine`): events in, actions out; no channel, no I/O, no clock. It owns
/// the session's state (HELO, the one envelope, counters, limits), the relay decision, the
/// error counting and the reply texts. The gateway's session, the simulator and the policy
/// tests drive it; tests drive it without a socket.
public struct SMTPServerStateMachine: Sendable {
    /// What the driver does next once it has performed the actions.
    public enum Phase: Sendable, Equatable {
        /// Waiting for the answer to an action (a stage, the downstream…).
        case busy
        /// Read the next command line.
        case command
        /// Read the message (after `receiveData`).
        case data
        /// Read the BDAT chunk `chunk` (after `receiveChunk` or `discardChunk`), then feed
        /// `chunkEnded`.
        case chunk
        /// STARTTLS was answered 220: wait for the handshake (`tlsEstablished`/`tlsFailed`).
        case handshake
        /// The session is over.
        case closed
    }

    enum Pending: Sendable, Equatable {
        case none, connect, helo(name: String, verb: String), open(ReversePath, MailParameters), mail, rcpt, verification,
             admission, chunkAdmission(BDATCommand), dataStage, dataStageAtEnd, messageStage, commit, delivery, handshake, credentials(SMTPCredentials)
    }

    public let configuration: SMTPServerConfiguration
    public let sessionID: String
    public internal(set) var phase: Phase = .busy
    var pending: Pending = .none
    /// The HELO/EHLO/LHLO name, once accepted.
    public internal(set) var helo: String?
    /// HELO, EHLO or LHLO: the verb given last (also while its stage runs).
    public internal(set) var heloVerb: String?
    /// The name under consideration while the helo stage runs, then the accepted one.
    public internal(set) var heloCandidate: String?
    /// The client greeted with EHLO or LHLO.
    public internal(set) var extended = false
    public internal(set) var transaction: SMTPTransaction?
    /// Transactions begun in this session.
    public internal(set) var transactions = 0
    /// Refused commands since the last accepted message.
    public internal(set) var errors = 0
    /// Harmless commands since the last accepted message.
    public internal(set) var junk = 0
    /// True while answering a client command (a refusal counts as an error).
    var answering = false
    /// Set when the data stage refused: the message is refused at its end.
    var dataOutcome: SMTPStageOutcome?
    /// The data stage has run for this message (it runs at the end of data for a message
    /// without a blank line after its header section).
    var dataStageRan = false
    var dataSummary = SMTPDataSummary()
    /// Fields the RCPT stage asked for, added once the recipient is taken.
    var candidateHeaders: [HeaderField] = []
    /// The BDAT chunk being read, in phase `chunk`.
    public internal(set) var chunk: BDATCommand?
    /// The chunk is part of the message (else its octets are read and thrown away).
    public internal(set) var chunkKept = false
    /// The answer to a BDAT whose chunk is thrown away, sent once the chunk is read.
    var afterChunk: [SMTPServerAction] = []
    /// Set after a refused BDAT that was not the last, until the BDAT LAST or another command.
    var failedChunks: FailedChunks?
    /// How many replies the BDAT being answered gets if it is the last (LMTP: one per recipient).
    var lastReplies = 1
    /// The session's TLS layer, once its handshake is done.
    public internal(set) var tls: SMTPTLSInfo?
    /// The user the client authenticated as (AUTH).
    public internal(set) var authUser: SMTPAuthenticatedUser?
    /// An AUTH exchange waiting for the client's response to a 334.
    var sasl: SASLExchange?
    /// Failed AUTH attempts in this session.
    public internal(set) var authFailures = 0

    public init(configuration: SMTPServerConfiguration, sessionID: String) {
        self.configuration = configuration
        self.sessionID = sessionID
    }

    /// The stage a decision belongs to, from where the session is.
    public var currentStage: Stage {
        if let t = transaction { return t.recipients.isEmpty && t.candidate == nil ? .mail : .rcpt }
        return helo == nil ? .connect : .helo
    }

    /// Feeds one event; returns what to do, in order.
    public mutating func handle(_ event: SMTPServerEvent) -> [SMTPServerAction] {
        if phase == .closed { return [] }
        switch event {
        case .connected:
            pending = .connect
            return [.runStage(.connect)]
        case .command(let line):
            guard phase == .command else { return [] }
            answering = true
            defer { answering = false }
            return command(line)
        case .stageDone(let stage, let outcome):
            // A refusal by a stage answers the command that ran it: it counts.
            answering = true
            defer { answering = false }
            return stageDone(stage, outcome)
        case .transactionOpened(let allowed):
            return transactionOpened(allowed)
        case .recipientVerified(let target, let reply):
            answering = true
            defer { answering = false }
            return recipientVerified(target: target, reply: reply)
        case .dataAdmitted(let refusal, let ends):
            return dataAdmitted(refusal, endsTransaction: ends)
        case .headersComplete:
            guard receivingMessage else { return [] }
            pending = .dataStage
            return [.runStage(.data)]
        case .dataEnded(let summary):
            return dataEnded(summary)
        case .chunkEnded(let summary):
            return chunkEnded(summary)
        case .improperPipelining:
            let r = SMTPReply(554, "5.5.0", "Message text sent before the 354 reply (improper pipelining); closing")
            return [.log(decision(.data, "protocol", "improper-pipelining", "reject", r,
                                  "message text arrived before the DATA command was answered (RFC 2920 3.1)")),
                    .send(r), close(.protocolViolation)]
        case .committed(let error):
            return committed(error: error)
        case .delivered(let report):
            return delivered(report)
        case .timeout:
            return timedOut(reason: receivingMessage ? "no data for \(configuration.connectionTimeout)s; message discarded"
                                                   : "no command for \(configuration.connectionTimeout)s")
        case .dataDeadlinePassed:
            let r = SMTPReply(451, "4.4.2", "DATA took longer than \(configuration.dataDeadline)s; message discarded")
            return [.log(decision(.data, "protocol", "data-deadline", "tempfail", r,
                                  "DATA phase over dataDeadline \(configuration.dataDeadline)s; message discarded")),
                    .send(r), close(.timeout)]
        case .closed(let byServer, let detail):
            let during = phase == .data ? "during DATA; message discarded" : phase == .chunk ? "during BDAT; message discarded" : detail
            return [close(byServer ? .shutdown : .clientClosed, detail: during)]
        case .shutdownRequested:
            return [.send(.shuttingDown), close(.shutdown)]
        case .tlsEstablished(let info):
            return tlsEstablished(info)
        case .tlsFailed(let why):
            return tlsFailed(why)
        case .credentialsChecked(let result):
            answering = true
            defer { answering = false }
            return credentialsChecked(result)
        }
    }

    // MARK: Replies and counting

    /// A reply to a command: a 5xx counts as an error (unknown verbs, syntax, bad sequence,
    /// relay and policy refusals); past maxErrors the client gets 421 instead and the
    /// session ends. Temporary answers do not count.
    mutating func reply(_ r: SMTPReply) -> [SMTPServerAction] {
        if answering && r.code >= 500 {
            errors += 1
            if errors > configuration.maxErrors { return closeForErrors() }
        }
        return [.send(r)]
    }

    /// The same reply `n` times (LMTP's BDAT LAST, one per recipient), counted once.
    mutating func reply(_ r: SMTPReply, times n: Int) -> [SMTPServerAction] {
        let first = reply(r)
        guard n > 1, first == [.send(r)] else { return first }
        return first + Array(repeating: .send(r), count: n - 1)
    }

    mutating func closeForErrors() -> [SMTPServerAction] {
        [.log(decision(currentStage, "protocol", "too-many-errors", "tempfail", .tooManyErrors,
                       "\(errors) refused commands (limit maxUnrecognizedCommands \(configuration.maxErrors))")),
         .send(.tooManyErrors), close(.tooManyErrors)]
    }

    /// A refusal the session decides itself: logged, then answered (and counted).
    mutating func refuse(_ stage: Stage, _ check: String, _ result: String, _ r: SMTPReply, _ reason: String) -> [SMTPServerAction] {
        [.log(decision(stage, check, result, r.isTransient ? "tempfail" : "reject", r, reason))] + reply(r)
    }

    func decision(_ stage: Stage, _ check: String, _ result: String, _ action: String, _ r: SMTPReply?, _ reason: String?) -> SMTPDecision {
        SMTPDecision(stage: stage, check: check, result: result, action: action, reply: r, reason: reason,
                     sender: stage >= .mail ? transaction?.sender : nil, recipient: stage == .rcpt ? transaction?.candidate : nil)
    }

    mutating func close(_ reason: SMTPCloseReason, detail: String? = nil) -> SMTPServerAction {
        phase = .closed
        pending = .none
        return .close(reason, detail: detail)
    }

    /// Reading message octets: DATA's lines or a BDAT chunk.
    var receivingMessage: Bool { phase == .data || phase == .chunk }

    mutating func timedOut(reason: String) -> [SMTPServerAction] {
        let stage = receivingMessage ? Stage.data : currentStage
        return [.log(decision(stage, "protocol", "timeout", "tempfail", .timeout, reason)), .send(.timeout), close(.timeout)]
    }

    /// Back to reading commands.
    mutating func ready(_ actions: [SMTPServerAction]) -> [SMTPServerAction] {
        if phase != .closed {
            phase = .command
            pending = .none
        }
        return actions
    }

    mutating func awaiting(_ p: Pending, _ actions: [SMTPServerAction]) -> [SMTPServerAction] {
        phase = .busy
        pending = p
        return actions
    }

    /// Ends the transaction (RSET, HELO, a refused MAIL, the end of data).
    mutating func endTransaction() -> SMTPServerAction {
        transaction = nil
        dataOutcome = nil
        dataStageRan = false
        dataSummary = SMTPDataSummary()
        return .endTransaction
    }
}
