import SMTPProtocol

/// What the intake has learnt of the message in flight, for the checks.
public struct MessageFacts: Sendable {
    public var headers: [HeaderField] = []
    public var size = 0
    public var truncated = false
    /// What streaming checks found, by check name (at the end of data).
    public var streamed: [String: any Sendable] = [:]
    public init() {}
    public var messageID: String { headers.first { $0.name.lowercased() == "message-id" }?.value ?? "" }
}

extension CheckContext {
    /// The context a stage runs with: these client facts, the machine's state (HELO, the
    /// envelope, the recipient under consideration) and the message's facts. Derived, never
    /// kept: the gateway's session and the simulator build it the same way.
    public func at(_ m: SMTPServerStateMachine, message: MessageFacts?, score: Double) -> CheckContext {
        var c = self
        c.heloVerb = m.heloVerb
        c.helo = m.heloCandidate
        c.tls = c.tls || m.tls != nil
        c.authenticatedUser = c.authenticatedUser ?? m.authUser?.name
        if let t = m.transaction {
            c.sender = t.sender
            c.mailParameters = t.parameters
            c.recipients = t.recipients
            c.recipient = t.candidate
        }
        if let f = message {
            c.headers = f.headers
            c.messageSize = f.size
            c.messageTruncated = f.truncated
            c.streamed = f.streamed
        }
        c.score = score
        return c
    }
}
