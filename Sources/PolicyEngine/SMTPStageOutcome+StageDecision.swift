import SMTPProtocol

extension SMTPStageOutcome {
    /// A policy stage's decision as the state machine takes it.
    public init(_ d: StageDecision) {
        self.init(action: d.action.name, reply: d.action.reply, headers: d.headers)
    }
}
