/// The one envelope of a transaction, owned by the state machine.
public struct SMTPTransaction: Sendable, Equatable {
    /// `<session id>.<n>`: in the trace field and every log record of the transaction.
    public var id: String
    public var sender: ReversePath
    public var parameters: MailParameters
    /// Accepted recipients, in order.
    public var recipients: [Mailbox] = []
    /// Each accepted recipient's DSN parameters, in the same order.
    public var recipientParameters: [RecipientParameters] = []
    /// The recipient under consideration at RCPT (checks, verification), and its parameters.
    public var candidate: Mailbox?
    public var candidateParameters = RecipientParameters()
    /// True once any RCPT was given (for 554 "No valid recipients" at DATA).
    public var rcptAttempted = false
    /// The message is coming in BDAT chunks (DATA is then out of sequence).
    public var chunked = false
    /// Octets of BDAT chunks taken into the message so far.
    public var chunkOctets = 0
    /// Fields the checks asked to add to the message.
    public var headers: [HeaderField] = []

    public init(id: String, sender: ReversePath, parameters: MailParameters) {
        self.id = id
        self.sender = sender
        self.parameters = parameters
    }
}
