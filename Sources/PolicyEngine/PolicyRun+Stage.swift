import SMTPProtocol

/// One stage's working state while `PolicyRun.run` goes through it: on the heap, so the
/// async driver's frame holds one reference instead of every verdict and the context.
final class StageWork {
    let stage: Stage
    var ctx: CheckContext
    var decision = StageDecision()
    var checkVerdicts: [PolicyVerdict] = []
    /// The check that decided: its action, its verdict's index, its reason, its deferral.
    var candidate: (action: Action, by: Int, reason: String?, deferTo: Stage?)?
    var stageFacts: [String: FactValue] = [:]
    var ruleVerdicts: [PolicyVerdict] = []
    var ruleDecision: (action: Action, rule: CompiledRule)?

    @inline(never)
    init(stage: Stage, context: CheckContext, run: PolicyRun) {
        self.stage = stage
        ctx = context
        ctx.score = run.score
        if ctx.clientPTR == nil { ctx.clientPTR = run.clientPTR }
    }
}

/// A rule whose condition held, before its effects are applied (an object: it is held
/// across the rule's `greylist`, in `runRules`' frame).
final class FiredRule {
    var verdict: PolicyVerdict
    var terminal: Action?
    var greylistAsked = false

    init(verdict: PolicyVerdict) { self.verdict = verdict }

    /// The greylist check's answer to the rule's `greylist`.
    func greylisted(_ r: CheckResult) {
        verdict.result = "greylist \(r.result)"
        verdict.reason = r.reason
        if case .continue = r.action {} else { terminal = r.action }
    }
}

// The synchronous steps of `PolicyRun.run`. They are kept out of line: inlined into the
// async driver, their locals would be laid out in its frame.
extension PolicyRun {
    /// The stage's decision before any check, if there is one: a rejection deferred to
    /// RCPT, or nothing to do once the session or the transaction was accepted.
    @inline(never)
    func begin(_ w: StageWork, record: (PolicyVerdict) -> Void) -> StageDecision? {
        if let d = deferredAtRCPT(w, record: record) { return d }
        if sessionAccepted || (transactionAccepted && w.stage >= .mail) { return w.decision }
        return nil
    }

    /// A rejection deferred to RCPT is given now, except to postmaster.
    func deferredAtRCPT(_ w: StageWork, record: (PolicyVerdict) -> Void) -> StageDecision? {
        guard w.stage == .rcpt, let d = deferred, d.at == .rcpt, let reply = d.action.reply else { return nil }
        if PolicyRun.isPostmaster(w.ctx.recipient, local: isLocalDomain) {
            record(PolicyVerdict(stage: .rcpt, check: "policy", rule: nil, result: "postmaster", action: "continue",
                                 reason: "deferred \(d.action.name) by \(d.by) not applied to postmaster"))
            return nil
        }
        record(PolicyVerdict(stage: .rcpt, check: "policy", rule: nil, result: "deferred", action: d.action.name, reply: reply,
                             reason: "decided at \(d.from.rawValue) by \(d.by)\(d.reason.map { ": \($0)" } ?? "")"))
        var decision = w.decision
        decision.action = d.action
        return decision
    }

    /// One check's result into the stage; true when it decided (the checks stop there).
    /// Out of descriptors or DNS capacity (`localFailure`) is the gateway's own trouble:
    /// never a pass.
    @inline(never)
    func take(_ result: CheckResult, of pc: PolicyCheck, into w: StageWork, micros: Int, localFailure: Bool) -> Bool {
        var r = result
        let name = pc.check.name
        PolicyRun.applyOnError(&r, r.backendError && localFailure ? .tempfail : pc.onError)
        if let ptr = r.clientPTR, !ptr.isEmpty {
            clientPTR = ptr
            w.ctx.clientPTR = ptr
        }
        w.stageFacts["\(name).result"] = .string(r.result)
        w.stageFacts["\(name).reason"] = .string(r.reason ?? "")
        for (k, v) in r.facts { w.stageFacts["\(name).\(k)"] = v }
        w.ctx.score += r.score
        w.decision.headers += r.headers
        w.checkVerdicts.append(PolicyVerdict(stage: w.stage, check: name, rule: nil, result: r.result, action: r.action.name,
                                             reply: r.action.reply, reason: r.reason, score: r.score, durationMicros: micros))
        if case .continue = r.action { return false }
        w.candidate = (r.action, w.checkVerdicts.count - 1, r.reason, r.deferTo)
        return true
    }

    /// What the stage's checks found, for the rules of this and later stages.
    @inline(never)
    func keepFacts(of w: StageWork) {
        switch w.stage {
        case .connect: connectFacts.merge(w.stageFacts) { _, new in new }
        case .helo: heloFacts.merge(w.stageFacts) { _, new in new }
        default: transactionFacts.merge(w.stageFacts) { _, new in new }
        }
    }

    /// The rule's actions, rendered, if its condition holds. A monitored rule's `greylist`
    /// is only what would have happened.
    @inline(never)
    func fire(_ rule: CompiledRule, _ w: StageWork) -> FiredRule? {
        let facts: (String) -> FactValue? = { [ctx = w.ctx] name in self.fact(name, ctx) }
        guard rule.fires(facts) else { return nil }
        let f = FiredRule(verdict: PolicyVerdict(stage: w.stage, check: "policy", rule: rule.name, place: rule.place,
                                                 result: "match", action: "continue"))
        f.verdict.facts = rule.readValues(facts)
        for a in rule.actions {
            switch a {
            case .score(let s): f.verdict.score += s
            case .header(let n, let t): f.verdict.headers.append(HeaderField(n, t.render(facts)))
            case .log(let t): f.verdict.reason = t?.render(facts)
            case .accept: f.terminal = .accept
            case .reject(let t): f.terminal = .reject(t.render(facts))
            case .tempfail(let t): f.terminal = .tempfail(t.render(facts))
            case .greylist: f.greylistAsked = true
            }
        }
        if f.greylistAsked && rule.monitor { f.terminal = .tempfail(SMTPReply(451, "4.7.1", "Greylisted, try again later")) }
        return f
    }

    /// A fired rule's effects; true when it decided (the rules stop there). Nothing of a
    /// monitored rule takes effect: its record says what would have.
    @inline(never)
    func take(_ fired: FiredRule, of rule: CompiledRule, into w: StageWork) -> Bool {
        var v = fired.verdict
        if rule.monitor {
            var would: [String] = []
            if let t = fired.terminal { would.append(t.reply.map { "\(t.name) \($0.summary)" } ?? t.name) }
            if v.score != 0 { would.append("score \(v.score > 0 ? "+" : "")\(FactValue.format(v.score))") }
            for h in v.headers { would.append("header \(h.name)") }
            v.would = would.isEmpty ? nil : would.joined(separator: "; ")
            v.action = "continue"
            v.score = 0
            v.headers = []
            w.ruleVerdicts.append(v)
            return false
        }
        w.ctx.score += v.score
        if policy.monitor && !v.headers.isEmpty {
            v.would = v.headers.map { "header \($0.name): \($0.value)" }.joined(separator: "; ")
            v.headers = []
        } else {
            w.decision.headers += v.headers
        }
        if let t = fired.terminal {
            v.action = t.name
            v.reply = t.reply
            w.ruleVerdicts.append(v)
            w.ruleDecision = (t, rule)
            return true
        }
        v.action = v.score != 0 ? "score" : (v.headers.isEmpty ? "log" : "header")
        w.ruleVerdicts.append(v)
        return false
    }

    /// The stage's outcome: a rule's decision overrides the check's, then the thresholds
    /// (end of data), monitor mode and deferral; the scores kept and every verdict recorded.
    @inline(never)
    func conclude(_ w: StageWork, record: (PolicyVerdict) -> Void) -> StageDecision {
        var o = outcome(w)
        let thresholdVerdict = applyThresholds(w, &o)
        var verdicts = w.checkVerdicts + w.ruleVerdicts + (thresholdVerdict.map { [$0] } ?? [])
        applyModes(w.stage, &o, &verdicts)
        if case .accept = o.final {
            deferred = nil
            switch w.stage {
            case .connect: connectAccepted = true
            case .helo: heloAccepted = true
            case .rcpt: break
            default: transactionAccepted = true
            }
        }
        let stageScore = w.ctx.score - score
        switch w.stage {
        case .connect: connectScore += stageScore; deferredAfterConnect = deferred
        case .helo: heloScore += stageScore
        default: transactionScore += stageScore
        }
        for v in verdicts { record(v) }
        var decision = w.decision
        decision.action = o.final
        return decision
    }

    /// What the stage decided before thresholds and modes, and who decided it.
    struct Outcome {
        var final: Action = .continue
        var decidedBy = ""
        var deferTo: Stage?
        var reason: String?
    }

    func outcome(_ w: StageWork) -> Outcome {
        var o = Outcome()
        if let (a, rule) = w.ruleDecision {
            o.final = a
            o.decidedBy = "rule \(rule.name)"
            o.deferTo = rule.deferTo
            if let c = w.candidate, c.action != a {
                w.checkVerdicts[c.by].overriddenBy = rule.name
                w.checkVerdicts[c.by].action = "continue"
            }
        } else if let c = w.candidate {
            o.final = c.action
            o.decidedBy = "check \(w.checkVerdicts[c.by].check)"
            o.reason = c.reason
            o.deferTo = c.deferTo
        }
        return o
    }

    /// At the end of data, with nothing decided yet: the score against the thresholds.
    func applyThresholds(_ w: StageWork, _ o: inout Outcome) -> PolicyVerdict? {
        guard w.stage == .message, case .continue = o.final, !policy.thresholds.isEmpty else { return nil }
        let total = w.ctx.score
        let t = policy.thresholds
        let s = FactValue.format(total)
        var v = PolicyVerdict(stage: w.stage, check: "policy", rule: "thresholds", result: "score \(s)", action: "continue", score: 0)
        if let r = t.reject, total >= r {
            o.final = .reject(SMTPReply(550, "5.7.1", "Message refused as spam (score \(s))"))
            v.reason = "score \(s) >= reject \(FactValue.format(r))"
        } else if let tf = t.tempfail, total >= tf {
            o.final = .tempfail(SMTPReply(451, "4.7.1", "Message deferred as likely spam (score \(s)), try again later"))
            v.reason = "score \(s) >= tempfail \(FactValue.format(tf))"
        } else if let h = t.header, total >= h {
            v.reason = "score \(s) >= header \(FactValue.format(h))"
            let h = [HeaderField("X-Spam-Flag", "YES"), HeaderField("X-Spam-Score", s)]
            if policy.monitor {
                v.would = h.map { "header \($0.name): \($0.value)" }.joined(separator: "; ")
            } else {
                v.headers = h
                v.action = "header"
                w.decision.headers += h
            }
        } else {
            v.reason = "score \(s) below every threshold"
        }
        if o.final.reply != nil {
            v.action = o.final.name
            v.reply = o.final.reply
            o.decidedBy = "thresholds"
        }
        return v
    }

    /// Monitor mode and deferral turn a refusal into a record.
    func applyModes(_ stage: Stage, _ o: inout Outcome, _ verdicts: inout [PolicyVerdict]) {
        guard let reply = o.final.reply else { return }
        let final = o.final
        let lastIndex = verdicts.lastIndex { $0.action == final.name && $0.reply == reply }
        if policy.monitor {
            if let i = lastIndex {
                verdicts[i].would = "\(final.name) \(reply.summary)"
                verdicts[i].action = "continue"
            }
            o.final = .continue
        } else if stage <= .mail, let to = o.deferTo ?? policy.deferRejection {
            deferred = Deferred(action: final, at: to, from: stage, by: o.decidedBy, reason: o.reason)
            if let i = lastIndex {
                verdicts[i].action = "defer"
                verdicts[i].deferredTo = to
            }
            o.final = .continue
        }
    }
}
