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
    let pipeline: Pipeline
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
    private(set) var connectScore = 0.0
    private(set) var heloScore = 0.0
    public private(set) var transactionScore = 0.0
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
        self.pipeline = Pipeline(checks: policy.checks.map(\.check), checkTimeout: policy.checkTimeout)
        self.isLocalDomain = isLocalDomain
    }

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
    func greylist(_ stage: Stage, _ ctx: CheckContext) async -> CheckResult? {
        guard let pc = policy.checks.first(where: { $0.check.name == "greylist" }), let g = pc.check as? RuleGreylisting else { return nil }
        var r = await g.greylist(stage: stage, context: ctx)
        PolicyRun.applyOnError(&r, pc.onError)
        return r
    }

    /// Runs one stage: its checks, then its rules, then (at the end of data) the thresholds.
    public func run(_ stage: Stage, context: CheckContext, record: (PolicyVerdict) -> Void) async -> StageDecision {
        var ctx = context
        ctx.score = score
        if ctx.clientPTR == nil { ctx.clientPTR = clientPTR }
        var decision = StageDecision()

        // A rejection deferred to RCPT is given now, except to postmaster.
        if stage == .rcpt, let d = deferred, d.at == .rcpt, let reply = d.action.reply {
            if PolicyRun.isPostmaster(ctx.recipient, local: isLocalDomain) {
                record(PolicyVerdict(stage: .rcpt, check: "policy", rule: nil, result: "postmaster", action: "continue",
                                     reason: "deferred \(d.action.name) by \(d.by) not applied to postmaster"))
            } else {
                record(PolicyVerdict(stage: .rcpt, check: "policy", rule: nil, result: "deferred", action: d.action.name, reply: reply,
                                     reason: "decided at \(d.from.rawValue) by \(d.by)\(d.reason.map { ": \($0)" } ?? "")"))
                decision.action = d.action
                return decision
            }
        }
        if sessionAccepted || (transactionAccepted && stage >= .mail) { return decision }

        // 1. Checks, in order, until one decides.
        var checkVerdicts: [PolicyVerdict] = []
        var candidate: (action: Action, by: Int, reason: String?, deferTo: Stage?)?
        var stageFacts: [String: FactValue] = [:]
        for pc in policy.checks where pc.check.stages.contains(stage) {
            let check = pc.check
            let start = ContinuousClock.now
            let localFailuresBefore = DNSResolver.localFailures
            var r = await pipeline.evaluate(check, stage: stage, context: ctx)
            let micros = PolicyRun.micros(ContinuousClock.now - start)
            // Out of descriptors or DNS capacity is the gateway's own trouble: never a pass.
            PolicyRun.applyOnError(&r, r.backendError && DNSResolver.localFailures != localFailuresBefore ? .tempfail : pc.onError)
            if let ptr = r.clientPTR, !ptr.isEmpty {
                clientPTR = ptr
                ctx.clientPTR = ptr
            }
            stageFacts["\(check.name).result"] = .string(r.result)
            stageFacts["\(check.name).reason"] = .string(r.reason ?? "")
            for (k, v) in r.facts { stageFacts["\(check.name).\(k)"] = v }
            ctx.score += r.score
            decision.headers += r.headers
            checkVerdicts.append(PolicyVerdict(stage: stage, check: check.name, rule: nil, result: r.result, action: r.action.name,
                                               reply: r.action.reply, reason: r.reason, score: r.score, durationMicros: micros))
            if case .continue = r.action { continue }
            candidate = (r.action, checkVerdicts.count - 1, r.reason, r.deferTo)
            break
        }
        switch stage {
        case .connect: connectFacts.merge(stageFacts) { _, new in new }
        case .helo: heloFacts.merge(stageFacts) { _, new in new }
        default: transactionFacts.merge(stageFacts) { _, new in new }
        }

        // 2. Rules, in order, until one decides.
        var ruleVerdicts: [PolicyVerdict] = []
        var ruleDecision: (action: Action, rule: CompiledRule)?
        let monitorAll = policy.monitor
        for rule in policy.rules where rule.stage == stage {
            let facts: (String) -> FactValue? = { [ctx] name in self.fact(name, ctx) }
            guard rule.fires(facts) else { continue }
            var v = PolicyVerdict(stage: stage, check: "policy", rule: rule.name, place: rule.place, result: "match", action: "continue")
            v.facts = rule.readValues(facts)
            var terminal: Action?
            var greylistAsked = false
            for a in rule.actions {
                switch a {
                case .score(let s):
                    v.score += s
                case .header(let n, let t):
                    v.headers.append(HeaderField(n, t.render(facts)))
                case .log(let t):
                    v.reason = t?.render(facts)
                case .accept: terminal = .accept
                case .reject(let t): terminal = .reject(t.render(facts))
                case .tempfail(let t): terminal = .tempfail(t.render(facts))
                case .greylist: greylistAsked = true
                }
            }
            if greylistAsked {
                if rule.monitor {
                    terminal = .tempfail(SMTPReply(451, "4.7.1", "Greylisted, try again later"))
                } else if let r = await greylist(stage, ctx) {
                    v.result = "greylist \(r.result)"
                    v.reason = r.reason
                    if case .continue = r.action {} else { terminal = r.action }
                }
            }
            if rule.monitor {
                // Nothing of a monitored rule takes effect; the record says what would have.
                var would: [String] = []
                if let t = terminal { would.append(t.reply.map { "\(t.name) \($0.summary)" } ?? t.name) }
                if v.score != 0 { would.append("score \(v.score > 0 ? "+" : "")\(FactValue.format(v.score))") }
                for h in v.headers { would.append("header \(h.name)") }
                v.would = would.isEmpty ? nil : would.joined(separator: "; ")
                v.action = "continue"
                v.score = 0
                v.headers = []
                ruleVerdicts.append(v)
                continue
            }
            ctx.score += v.score
            if monitorAll && !v.headers.isEmpty {
                v.would = v.headers.map { "header \($0.name): \($0.value)" }.joined(separator: "; ")
                v.headers = []
            } else {
                decision.headers += v.headers
            }
            if let t = terminal {
                v.action = t.name
                v.reply = t.reply
                ruleVerdicts.append(v)
                ruleDecision = (t, rule)
                break
            }
            v.action = v.score != 0 ? "score" : (v.headers.isEmpty ? "log" : "header")
            ruleVerdicts.append(v)
        }

        // A rule's decision overrides the check's.
        var final: Action = .continue
        var decidedBy = ""
        var deferTo: Stage? = nil
        var reason: String?
        if let (a, rule) = ruleDecision {
            final = a
            decidedBy = "rule \(rule.name)"
            deferTo = rule.deferTo
            if let c = candidate, c.action != a {
                checkVerdicts[c.by].overriddenBy = rule.name
                checkVerdicts[c.by].action = "continue"
            }
        } else if let c = candidate {
            final = c.action
            decidedBy = "check \(checkVerdicts[c.by].check)"
            reason = c.reason
            deferTo = c.deferTo
        }

        // 3. Thresholds, at the end of data.
        var thresholdVerdict: PolicyVerdict?
        if stage == .message, case .continue = final, !policy.thresholds.isEmpty {
            let total = ctx.score
            let t = policy.thresholds
            let s = FactValue.format(total)
            var v = PolicyVerdict(stage: stage, check: "policy", rule: "thresholds", result: "score \(s)", action: "continue", score: 0)
            if let r = t.reject, total >= r {
                final = .reject(SMTPReply(550, "5.7.1", "Message refused as spam (score \(s))"))
                v.reason = "score \(s) >= reject \(FactValue.format(r))"
            } else if let tf = t.tempfail, total >= tf {
                final = .tempfail(SMTPReply(451, "4.7.1", "Message deferred as likely spam (score \(s)), try again later"))
                v.reason = "score \(s) >= tempfail \(FactValue.format(tf))"
            } else if let h = t.header, total >= h {
                v.reason = "score \(s) >= header \(FactValue.format(h))"
                let h = [HeaderField("X-Spam-Flag", "YES"), HeaderField("X-Spam-Score", s)]
                if monitorAll {
                    v.would = h.map { "header \($0.name): \($0.value)" }.joined(separator: "; ")
                } else {
                    v.headers = h
                    v.action = "header"
                    decision.headers += h
                }
            } else {
                v.reason = "score \(s) below every threshold"
            }
            if final.reply != nil {
                v.action = final.name
                v.reply = final.reply
                decidedBy = "thresholds"
            }
            thresholdVerdict = v
        }

        // 4. Monitor mode and deferral turn a refusal into a record.
        var verdicts = checkVerdicts + ruleVerdicts + (thresholdVerdict.map { [$0] } ?? [])
        let lastIndex = verdicts.lastIndex { $0.action == final.name && final.reply != nil && $0.reply == final.reply }
        if let reply = final.reply {
            if monitorAll {
                if let i = lastIndex {
                    verdicts[i].would = "\(final.name) \(reply.summary)"
                    verdicts[i].action = "continue"
                }
                final = .continue
            } else if stage <= .mail, let to = deferTo ?? policy.deferRejection {
                deferred = Deferred(action: final, at: to, from: stage, by: decidedBy, reason: reason)
                if let i = lastIndex {
                    verdicts[i].action = "defer"
                    verdicts[i].deferredTo = to
                }
                final = .continue
            }
        }
        if case .accept = final {
            deferred = nil
            switch stage {
            case .connect: connectAccepted = true
            case .helo: heloAccepted = true
            case .rcpt: break
            default: transactionAccepted = true
            }
        }
        let stageScore = ctx.score - score
        switch stage {
        case .connect: connectScore += stageScore; deferredAfterConnect = deferred
        case .helo: heloScore += stageScore
        default: transactionScore += stageScore
        }
        for v in verdicts { record(v) }
        decision.action = final
        return decision
    }

    static func micros(_ d: Duration) -> Int {
        Int(d.components.seconds) * 1_000_000 + Int(d.components.attoseconds / 1_000_000_000_000)
    }
}
