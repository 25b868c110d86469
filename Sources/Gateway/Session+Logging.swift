import Foundation
import SMTPProtocol
import PolicyEngine
import DecisionLog

/// The session's records in the decision log: who, what stage, which check, what result,
/// what action, why.
extension Session {
    /// A record of this session; it carries the verdicts folded since the last one.
    func record(_ event: String, _ fields: [(String, JSONValue)]) -> LogRecord {
        var f = redacted(fields)
        if !foldedChecks.isEmpty {
            f.append(("checks", .array(foldedChecks)))
            foldedChecks = []
        }
        return LogRecord(event: event, session: id, fields: [("client", .string(clientIPText))] + f)
    }

    /// `log.redact` applied to the fields, for the addresses the session knows now.
    func redacted(_ fields: [(String, JSONValue)]) -> [(String, JSONValue)] {
        guard shared.redactor.mode != .off else { return fields }
        let t = machine.transaction
        let addresses = ((t?.recipients ?? []) + (t?.candidate.map { [$0] } ?? []) + redactAlso).map(\.description)
        return shared.redactor.redact(fields, addresses: addresses)
    }

    /// The most verdicts waiting to be folded into a record (a client looping MAIL, RCPT
    /// and RSET writes no other record): past it they are written as a `checks` record.
    static let maxFoldedChecks = 32

    /// Folds a verdict of a check that did not act into the session's next record. (The
    /// session's own decisions are never folded: relaying allowed, AUTH, headers removed.)
    func fold(stage: Stage, check: String, rule: String? = nil, result: String, durationMs: Double?, reason: String?, subject: String?) {
        let entry = FoldedChecks.entry(stage: stage.rawValue, check: check, rule: rule, result: result, durationMs: durationMs, reason: reason, subject: subject)
        foldedChecks.append(redacted([("", entry)]).first?.1 ?? entry)
        if foldedChecks.count >= Self.maxFoldedChecks { log("checks", []) }
    }

    /// The verdict's subject in a folded entry: the HELO name at HELO, the sender at MAIL,
    /// the recipient at RCPT.
    func foldSubject(_ stage: Stage) -> String? {
        switch stage {
        case .helo: return machine.heloCandidate ?? machine.helo
        case .mail: return machine.transaction?.sender.description
        case .rcpt: return machine.transaction?.candidate?.description
        default: return nil
        }
    }

    func log(_ event: String, _ fields: [(String, JSONValue)]) {
        shared.log.append(record(event, fields))
    }

    var policyFields: [(String, JSONValue)] { [("policy", .string(policy.name)), ("policy_version", .string(policy.version))] }

    /// A decision the session makes itself (protocol, relay, limits…), in a verdict's shape.
    func logDecision(_ d: SMTPDecision) {
        redactAlso = d.recipient.map { [$0] } ?? []
        defer { redactAlso = [] }
        var f: [(String, JSONValue)] = [("stage", .string(d.stage.rawValue)), ("check", .string(d.check)), ("result", .string(d.result)),
                                        ("action", .string(d.action))]
        if let r = d.reply { f.append(("reply", .string(r.summary))) }
        if let r = d.reason { f.append(("reason", .string(r))) }
        shared.metrics.verdict(stage: d.stage.rawValue, check: d.check, action: d.action)
        if let s = d.sender { f.append(("sender", .string(s.description))) }
        if let r = d.recipient { f.append(("recipient", .string(r.description))) }
        log("verdict", f + policyFields)
    }

    /// A verdict of the policy: a check's result, a rule that fired, a threshold.
    func logVerdict(_ v: PolicyVerdict, extra: [(String, JSONValue)]) {
        shared.metrics.verdict(stage: v.stage.rawValue, check: v.check, action: v.action)
        if v.action == "continue" && v.reply == nil && v.score == 0 && v.headers.isEmpty && v.would == nil && v.deferredTo == nil
            && v.overriddenBy == nil && v.place == nil {
            return fold(stage: v.stage, check: v.check, rule: v.rule, result: v.result, durationMs: v.durationMicros.map { Double($0) / 1000 },
                        reason: v.reason, subject: foldSubject(v.stage))
        }
        var f: [(String, JSONValue)] = [("stage", .string(v.stage.rawValue)), ("check", .string(v.check))]
        if let r = v.rule { f.append(("rule", .string(r))) }
        if let p = v.place { f.append(("rule_file", .string(p))) }
        f += [("result", .string(v.result)), ("action", .string(v.action))]
        if let r = v.reply { f.append(("reply", .string(r.summary))) }
        if let r = v.reason { f.append(("reason", .string(r))) }
        if v.score != 0 { f.append(("score", .double(v.score))) }
        if let w = v.would { f.append(("monitor", .bool(true))); f.append(("would", .string(w))) }
        if let d = v.deferredTo { f.append(("deferred_to", .string(d.rawValue))) }
        if let o = v.overriddenBy { f.append(("overridden_by", .string(o))) }
        if !v.headers.isEmpty { f.append(("headers", .array(v.headers.map { .string("\($0.name): \($0.value)") }))) }
        if let d = v.durationMicros { f.append(("duration_ms", .double(Double(d) / 1000))) }
        log("verdict", f + extra + policyFields)
    }

    func stageContext(_ stage: Stage) -> [(String, JSONValue)] {
        var f: [(String, JSONValue)] = []
        if stage == .helo, let h = machine.heloCandidate ?? machine.helo { f.append(("helo", .string(h))) }
        if let t = machine.transaction, stage >= .mail { f.append(("sender", .string(t.sender.description))) }
        if stage == .rcpt, let r = machine.transaction?.candidate { f.append(("recipient", .string(r.description))) }
        return f
    }

    func logTransaction(_ t: SMTPTransaction, action: String, reply: SMTPReply) {
        redactAlso = t.recipients
        defer { redactAlso = [] }
        shared.metrics.transaction(outcome: action)
        var f: [(String, JSONValue)] = [
            ("transaction", .string(t.id)), ("helo", .string(machine.helo ?? "")), ("sender", .string(t.sender.description)),
            ("recipients", .array(t.recipients.map { .string($0.description) })), ("size", .int(message?.size ?? 0)),
            ("message_id", .string(message?.messageID ?? "")), ("action", .string(action)), ("reply", .string(reply.summary)),
        ] + policyFields
        if run.score != 0 { f.append(("score", .double(run.score))) }
        if let tls = machine.tls {
            var o: [(String, JSONValue)] = [("version", .string(tls.version)), ("cipher", .string(tls.cipher))]
            if let n = tls.serverName { o.append(("sni", .string(n))) }
            f.append(("tls", .object(o)))
        }
        if let user = machine.authUser { f.append(("auth_user", .string(user.name))) }
        if t.parameters.requireTLS { f.append(("requiretls", .bool(true))) }
        if t.chunked { f.append(("chunked", .bool(true))) }
        if let dsn = Self.dsnFields(t) { f.append(("dsn", dsn)) }
        if let d = delivery {
            var down: [(String, JSONValue)] = [("target", .string(d.target)), ("result", .string(d.kind.rawValue)), ("reply", .string(d.detail))]
            if let each = d.perRecipient { down.append(("recipients", .array(each.map { .string($0.summary) }))) }
            if let tls = d.downstreamTLS { down.append(("tls", .string(tls))) }
            f.append(("downstream", .object(down)))
        }
        delivery = nil
        log("transaction", f)
    }

    /// The transaction's DSN parameters (RFC 3461), when the client gave any.
    static func dsnFields(_ t: SMTPTransaction) -> JSONValue? {
        var f: [(String, JSONValue)] = []
        if let r = t.parameters.ret { f.append(("ret", .string(r))) }
        if let e = t.parameters.envid { f.append(("envid", .string(e))) }
        if t.recipientParameters.contains(where: { !$0.isEmpty }) {
            f.append(("recipients", .array(t.recipientParameters.map { p in
                .object([("notify", .string(p.notify ?? "")), ("orcpt", .string(p.orcpt ?? ""))])
            })))
        }
        return f.isEmpty ? nil : .object(f)
    }

    func close(_ reason: SMTPCloseReason, detail: String?) {
        if closeLogged { return }
        closeLogged = true
        let d = (ContinuousClock.now - started).components
        var f: [(String, JSONValue)] = [("reason", .string(reason.rawValue)), ("transactions", .int(machine.transactions)),
                                        ("duration_ms", .int(Int(d.seconds) * 1000 + Int(d.attoseconds / 1_000_000_000_000_000)))]
        if let d = detail { f.append(("detail", .string(d))) }
        log("session.close", f)
    }
}
