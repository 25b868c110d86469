/// What a stage of the policy decided, as the state machine needs it.
public struct SMTPStageOutcome: Sendable, Equatable {
    /// continue, accept, reject or tempfail.
    public var action: String
    /// The reply when the stage refuses; nil to go on.
    public var reply: SMTPReply?
    /// Fields the checks ask to add to the message.
    public var headers: [HeaderField]

    public init(action: String = "continue", reply: SMTPReply? = nil, headers: [HeaderField] = []) {
        self.action = action
        self.reply = reply
        self.headers = headers
    }
    public static let proceed = SMTPStageOutcome()
}

/// What the message intake found once the final dot arrived.
public struct SMTPDataSummary: Sendable, Equatable {
    /// Octets of content received.
    public var size = 0
    /// The content is not valid SMTP (bare CR or LF…): its name and the reply.
    public var problem: (name: String, reply: SMTPReply)?
    /// The header section was over the intake's bound.
    public var headerTooLarge = false
    /// The content passed maxMessageSize and was not kept whole.
    public var truncated = false
    /// The spool could not keep the message.
    public var spoolError: String?

    public init() {}
    public static func == (a: SMTPDataSummary, b: SMTPDataSummary) -> Bool {
        a.size == b.size && a.problem?.name == b.problem?.name && a.problem?.reply == b.problem?.reply
            && a.headerTooLarge == b.headerTooLarge && a.truncated == b.truncated && a.spoolError == b.spoolError
    }
}

/// The downstream's answer for a message.
public struct SMTPDeliveryReport: Sendable, Equatable {
    /// accept, reject or tempfail (for the transaction record).
    public var action: String
    /// The reply for the whole message (SMTP).
    public var reply: SMTPReply
    /// One reply per accepted recipient, in order (LMTP); nil when all share `reply`.
    public var perRecipient: [SMTPReply]?

    public init(action: String, reply: SMTPReply, perRecipient: [SMTPReply]? = nil) {
        self.action = action
        self.reply = reply
        self.perRecipient = perRecipient
    }
}

/// What happens to a session, fed to the state machine by its driver.
public enum SMTPServerEvent: Sendable {
    /// The connection is accepted (runs the connect stage).
    case connected
    /// A command line from the client.
    case command(SMTPLine)
    /// A stage asked for by `runStage` has decided.
    case stageDone(Stage, SMTPStageOutcome)
    /// Answer to `openTransaction`: false when the gateway is shutting down.
    case transactionOpened(Bool)
    /// Answer to `verifyRecipient`: the target asked and its reply; nil when it could not
    /// be asked (the end of data decides).
    case recipientVerified(target: String, reply: SMTPReply?)
    /// Answer to `admitData`: a refusal of the DATA command (and whether it ends the
    /// transaction, as a rejection deferred to DATA does), or nil.
    case dataAdmitted(SMTPReply?, endsTransaction: Bool)
    /// The intake has the whole header section (runs the data stage).
    case headersComplete
    /// The final dot arrived.
    case dataEnded(SMTPDataSummary)
    /// The BDAT chunk asked for is read; for a kept chunk, what the intake has found so far
    /// (the last chunk's summary is the message's).
    case chunkEnded(SMTPDataSummary)
    /// A line read as message text was sent before the DATA command was answered, or
    /// claims to be a BDAT command there: the stream cannot be framed safely.
    case improperPipelining
    /// Answer to `commit`: nil when the decision is durable, else why not.
    case committed(error: String?)
    /// Answer to `deliver`.
    case delivered(SMTPDeliveryReport)
    /// No complete line within connectionTimeout.
    case timeout
    /// The DATA phase took longer than dataDeadline.
    case dataDeadlinePassed
    /// The connection is gone (closed by the client, or by the server at shutdown).
    case closed(byServer: Bool, detail: String?)
    /// The gateway is shutting down and the session is between transactions.
    case shutdownRequested
    /// The TLS handshake is done: after STARTTLS's 220, or (implicit TLS) before `connected`.
    case tlsEstablished(SMTPTLSInfo)
    /// The TLS handshake failed or did not finish in time; why.
    case tlsFailed(String)
    /// Answer to `checkCredentials`.
    case credentialsChecked(SMTPCredentialCheck)
}
