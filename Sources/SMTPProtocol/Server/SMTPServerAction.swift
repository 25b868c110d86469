/// What the driver must do for the state machine, in order. Those marked "answer" are
/// followed by the event named, before any other. The cases with a transaction or a
/// decision are boxed: an action is kept across `await`s in the driver's async frames,
/// which a session's task keeps for its whole life (280 octets inline, 57 boxed).
public enum SMTPServerAction: Sendable, Equatable {
    /// Write a reply.
    case send(SMTPReply)
    /// Run a stage of the policy over the machine's current state; answer `stageDone`.
    case runStage(Stage)
    /// Mark the session as in a transaction and start the policy's transaction; answer
    /// `transactionOpened`.
    case openTransaction
    /// The transaction is over; when the gateway is shutting down meanwhile, feed
    /// `shutdownRequested` once the other actions are done.
    case endTransaction
    /// Ask the downstream about a recipient; answer `recipientVerified`.
    case verifyRecipient(Mailbox)
    /// May DATA begin (the decision log healthy, no rejection deferred to DATA)? Answer
    /// `dataAdmitted`.
    case admitData
    /// The 354 is out: read the message through the intake, feeding `headersComplete` and
    /// `dataEnded`.
    case receiveData
    /// Read the chunk's octets into the message intake (the first chunk starts it),
    /// feeding `headersComplete` as for DATA, then `chunkEnded`.
    case receiveChunk(BDATCommand)
    /// Read the chunk's octets and throw them away (RFC 3030: a refused BDAT's data is
    /// still read), then feed `chunkEnded`.
    case discardChunk(BDATCommand)
    /// Make the decision to forward this transaction durable; answer `committed`.
    indirect case commit(SMTPTransaction)
    /// Forward the message; answer `delivered`.
    indirect case deliver(SMTPTransaction)
    /// Check a user's password (off the event loop, counting failures per client address);
    /// answer `credentialsChecked`.
    case checkCredentials(SMTPCredentials)
    /// An AUTH attempt failed: tell the operator's tools (fail2ban), besides the log.
    case authFailed(SMTPCredentials, result: String)
    /// Log a decision of the session.
    indirect case log(SMTPDecision)
    /// Log the transaction's outcome.
    indirect case logTransaction(SMTPTransaction, action: String, reply: SMTPReply)
    /// Log the end of the session and close the connection.
    case close(SMTPCloseReason, detail: String?)
}
