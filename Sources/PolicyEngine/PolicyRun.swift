import SMTPProtocol
import DNSResolver

/// One decision as the decision log records it: a check's result, a rule that fired, a
/// threshold, or a deferred reply given.
public struct PolicyVerdict: Sendable {
    public var stage: Stage
    /// The check's name, or "policy" for rules, thresholds and deferred replies.
    public var check: String
    public var rule: String?
    /// `file:line` of the rule.
    public var place: String?
    public var result: String
    /// What actually happened: continue, accept, reject, tempfail, defer, score, header, log.
    public var action: String
    public var reply: SMTPReply?
    public var reason: String?
    public var score: Double = 0
    public var durationMicros: Int?
    /// Set in monitor mode: what would have happened ("reject 550 5.7.1 …").
    public var would: String?
    /// The stage a deferred decision will be replied at.
    public var deferredTo: Stage?
    /// The rule that overrode a check's own decision.
    public var overriddenBy: String?
    public var headers: [HeaderField] = []
    /// Facts the rule's condition read, with their values (for the simulation trace).
    public var facts: [(String, String)] = []
}

/// What the session does after a stage.
public struct StageDecision: Sendable {
    public var action: Action = .continue
    public var headers: [HeaderField] = []
}

/// A policy applied to one SMTP session: runs each stage's checks, then its rules, keeps
/// the score, the check results and a deferred rejection from stage to stage. Owned by
/// one session; not shared.
public final class PolicyRun {
    public let policy: CompiledPolicy
    let isLocalDomain: @Sendable (String) -> Bool

    struct Deferred {
        var action: Action
        var at: Stage
        var from: Stage
        var by: String
        var reason: String?
    }

    /// What each part of the session learnt: the connect stage's holds for the whole
    /// connection; the HELO stage's until STARTTLS starts the session over; the
    /// transaction's until it ends.
    var connectFacts: [String: FactValue] = [:]
    var heloFacts: [String: FactValue] = [:]
    var transactionFacts: [String: FactValue] = [:]
    var connectScore = 0.0
    var heloScore = 0.0
    public internal(set) var transactionScore = 0.0
    var connectAccepted = false
    var heloAccepted = false
    var transactionAccepted = false
    var deferred: Deferred?
    /// `deferred` as the connect stage left it, for a session started over after STARTTLS.
    var deferredAfterConnect: Deferred?
    /// The verified reverse name, once a check has found it.
    var clientPTR: String?

    public init(policy: CompiledPolicy, isLocalDomain: @escaping @Sendable (String) -> Bool) {
        self.policy = policy
        self.isLocalDomain = isLocalDomain
    }

    var pipeline: Pipeline { policy.pipeline }

    public var sessionScore: Double { connectScore + heloScore }
    public var score: Double { sessionScore + transactionScore }
    var sessionAccepted: Bool { connectAccepted || heloAccepted }

    /// A new MAIL FROM.
    public func beginTransaction() {
        transactionFacts = [:]
        transactionScore = 0
        transactionAccepted = false
        if deferred?.from == .mail { deferred = nil }
    }

    public func endTransaction() { beginTransaction() }

    /// After STARTTLS the session starts over (RFC 3207 §4.2): what the HELO stage, the
    /// transaction and any AUTH decided is forgotten; what the connect stage decided about
    /// the client's address stands, a rejection it deferred included.
    public func restartAfterTLS() {
        beginTransaction()
        heloFacts = [:]
        heloScore = 0
        heloAccepted = false
        deferred = deferredAfterConnect
    }

    /// A successful AUTH: a deferred rejection no longer applies.
    public func authenticated() {
        deferred = nil
    }

    func fact(_ name: String, _ ctx: CheckContext) -> FactValue? {
        if let v = transactionFacts[name] ?? heloFacts[name] ?? connectFacts[name] { return v }
        return SessionFacts.value(name, ctx, localDomains: isLocalDomain)
    }

    static func isPostmaster(_ m: Mailbox?, local: (String) -> Bool) -> Bool {
        guard let m else { return false }
        return m.localPart.lowercased() == "postmaster" && (m.domain.isEmpty || local(m.domain))
    }

    /// At the DATA command: the reply of a rejection deferred to DATA, if any. A
    /// transaction whose recipients are all postmaster still goes through.
    public func atDataCommand(_ context: CheckContext, record: (PolicyVerdict) -> Void) -> SMTPReply? {
        guard let d = deferred, d.at == .data, let reply = d.action.reply else { return nil }
        if !context.recipients.isEmpty && context.recipients.allSatisfy({ PolicyRun.isPostmaster($0, local: isLocalDomain) }) {
            record(PolicyVerdict(stage: .data, check: "policy", rule: nil, result: "postmaster", action: "continue",
                                 reason: "deferred \(d.action.name) by \(d.by) not applied: every recipient is postmaster"))
            return nil
        }
        record(PolicyVerdict(stage: .data, check: "policy", rule: nil, result: "deferred", action: d.action.name, reply: reply,
                             reason: "decided at \(d.from.rawValue) by \(d.by)\(d.reason.map { ": \($0)" } ?? "")"))
        return reply
    }

    /// A check whose backend failed passes or tempfails, as its policy says.
    static func applyOnError(_ r: inout CheckResult, _ mode: FailureMode) {
        guard r.backendError else { return }
        switch mode {
        case .pass:
            r.action = .continue
            r.reason = (r.reason ?? "backend failure") + " (onError: pass)"
        case .tempfail:
            if r.action.reply == nil { r.action = .tempfail(SMTPReply(451, "4.3.0", "Temporary lookup failure, try again later")) }
            r.reason = (r.reason ?? "backend failure") + " (onError: tempfail)"
        }
    }

    /// A rule said `greylist`: the greylist check greylists the triplet now, its store's
    /// failure handled by the check's onError.
    @inline(never)
    func greylist(_ w: StageWork) async -> CheckResult? {
        guard let pc = policy.checks.first(where: { $0.check.name == "greylist" }), let g = pc.check as? RuleGreylisting else { return nil }
        var r = await g.greylist(stage: w.stage, context: w.ctx)
        PolicyRun.applyOnError(&r, pc.onError)
        return r
    }

    /// Runs one stage: its checks, then its rules, then (at the end of data) the thresholds.
    /// Only the checks and a rule's `greylist` wait; everything else is in synchronous steps
    /// (`PolicyRun+Stage.swift`) and the stage's state is one object on the heap, so this
    /// function's async frame, which a session's task keeps for as long as it lives, stays
    /// small (it was 13.5 KB, a third of an idle connection's memory).
    public func run(_ stage: Stage, context: CheckContext, record: (PolicyVerdict) -> Void) async -> StageDecision {
        let w = StageWork(stage: stage, context: context, run: self)
        if let d = begin(w, record: record) { return d }
        // A stage with no check (or no rule) calls no async step: their frames would stay
        // in the session's task for its whole life.
        if policy.checkStages.contains(stage) { await runChecks(w) }
        keepFacts(of: w)
        if policy.ruleStages.contains(stage) { await runRules(w) }
        return conclude(w, record: record)
    }

    /// Whether `run` may wait at this stage (`CompiledPolicy.waits(at:)`).
    public func waits(at stage: Stage) -> Bool { policy.waits(at: stage) }

    /// `run` for a stage where nothing waits (`waits(at:)` false), without an `await`: a
    /// session calls it so that a stage with nothing to ask costs its task no frames.
    /// Nil where something could wait.
    public func runNow(_ stage: Stage, context: CheckContext, record: (PolicyVerdict) -> Void) -> StageDecision? {
        guard !waits(at: stage) else { return nil }
        let w = StageWork(stage: stage, context: context, run: self)
        if let d = begin(w, record: record) { return d }
        keepFacts(of: w)
        return conclude(w, record: record)
    }

    /// The stage's checks, in order, until one decides.
    @inline(never)
    func runChecks(_ w: StageWork) async {
        for pc in policy.checks where pc.check.stages.contains(w.stage) {
            let start = ContinuousClock.now
            let localFailuresBefore = DNSResolver.localFailures
            let r = await pipeline.evaluate(pc.check, stage: w.stage, context: w.ctx)
            let localFailure = DNSResolver.localFailures != localFailuresBefore
            if take(r, of: pc, into: w, micros: PolicyRun.micros(ContinuousClock.now - start), localFailure: localFailure) { return }
        }
    }

    /// The stage's rules, in order, until one decides.
    @inline(never)
    func runRules(_ w: StageWork) async {
        for rule in policy.rules where rule.stage == w.stage {
            guard let fired = fire(rule, w) else { continue }
            if fired.greylistAsked && !rule.monitor, let r = await greylist(w) { fired.greylisted(r) }
            if take(fired, of: rule, into: w) { return }
        }
    }

    static func micros(_ d: Duration) -> Int {
        Int(d.components.seconds) * 1_000_000 + Int(d.components.attoseconds / 1_000_000_000_000)
    }
}
