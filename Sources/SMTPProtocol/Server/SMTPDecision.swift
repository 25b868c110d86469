/// A decision the session makes itself (protocol, relay, limits, data, delivery), in the
/// shape of a check's verdict, for the decision log.
public struct SMTPDecision: Sendable, Equatable {
    public var stage: Stage
    public var check: String
    public var result: String
    /// continue, accept, reject or tempfail.
    public var action: String
    public var reply: SMTPReply?
    public var reason: String?
    /// The transaction's sender, and at RCPT the recipient, when there is one.
    public var sender: ReversePath?
    public var recipient: Mailbox?

    public init(stage: Stage, check: String, result: String, action: String, reply: SMTPReply?, reason: String?,
                sender: ReversePath? = nil, recipient: Mailbox? = nil) {
        self.stage = stage
        self.check = check
        self.result = result
        self.action = action
        self.reply = reply
        self.reason = reason
        self.sender = sender
        self.recipient = recipient
    }
}

/// Why a session ended.
public enum SMTPCloseReason: String, Sendable {
    case quit, clientClosed = "client-closed", timeout, tooManyErrors = "too-many-errors", shutdown, refused,
         connectRejected = "connect-rejected", error, forbiddenCommand = "forbidden-command",
         protocolViolation = "protocol-violation", tlsFailed = "tls-failed"
}
