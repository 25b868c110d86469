import Foundation
import SMTPProtocol

/// A check result given by a policy test or `policy simulate` instead of running the check.
public struct InjectedResult: Sendable {
    public var result: String
    public var reason: String?
    public var score: Double = 0
    public var action: Action = .continue
    public var facts: [String: FactValue] = [:]
    public var backendError = false
    public init(result: String) { self.result = result }
}

/// Stands in for a check, answering what the test says.
/// Given for the greylist check, it also answers a rule's `greylist`: a result of new or
/// early is a 451 4.7.1, anything else passes.
struct InjectedCheck: RuleGreylisting {
    let name: String
    let stages: Set<Stage>
    let fixed: InjectedResult
    var waits: Bool { false }
    var greylistsByRule: Bool { true }
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        CheckResult(fixed.action, result: fixed.result, reason: fixed.reason, score: fixed.score, facts: fixed.facts,
                    backendError: fixed.backendError)
    }
    func greylist(stage: Stage, context: CheckContext) async -> CheckResult {
        var r = await evaluate(stage: stage, context: context)
        if case .continue = r.action, ["new", "early"].contains(r.result) { r.action = .tempfail(SMTPReply(451, "4.7.1", "Greylisted, try again later")) }
        return r
    }
}

/// One SMTP session to simulate.
public struct SimulationInput: Sendable {
    public var clientIP: IPAddress
    public var clientPTR: String?
    public var heloVerb = "EHLO"
    public var helo: String?
    public var sender: ReversePath?
    public var recipients: [Mailbox] = []
    /// The message as on disk (LF or CRLF line ends), headers and body.
    public var message: [UInt8]?
    public var authenticatedUser: String?
    public var tls = false
    public var localDomains: [String] = ["localhost", "localhost.localdomain"]
    public var authorizedAddresses: [IPNetwork] = [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!]
    /// Octets; 0 = unlimited.
    public var maxMessageSize = 0
    /// As the gateway's `allowUntrustedRouting`.
    public var allowUntrustedRouting = false
    /// Results to use instead of running these checks.
    public var injected: [String: InjectedResult] = [:]
    public init(clientIP: IPAddress) { self.clientIP = clientIP }

    func isLocal(_ d: String) -> Bool {
        var d = d.lowercased()
        if d.hasSuffix(".") { d.removeLast() }
        return localDomains.contains { $0.lowercased() == d }
    }
}

/// What a simulated session came to.
public struct SimulationResult: Sendable {
    public struct Step: Sendable {
        public var stage: Stage
        public var label: String
        public var verdicts: [PolicyVerdict]
        public var reply: SMTPReply?
    }
    public var steps: [Step] = []
    /// accept, reject or tempfail.
    public var action = "accept"
    public var stage: Stage = .message
    public var reply: SMTPReply?
    public var score = 0.0
    public var headers: [HeaderField] = []

    public var verdicts: [PolicyVerdict] { steps.flatMap(\.verdicts) }
    /// Rules that fired (monitored ones too), in order.
    public var rulesFired: [String] { verdicts.compactMap { $0.check == "policy" && $0.rule != "thresholds" ? $0.rule : nil } }
    /// What monitor mode held back.
    public var would: [String] { verdicts.compactMap(\.would) }
}

/// Runs a policy over a made-up session through the same state machine as the gateway
/// (`SMTPServerStateMachine`), with a simulated transport and no network: the answer to
/// "why would this mail be refused?". The client gives up at the first refusal at
/// connect, HELO or MAIL; refused recipients are skipped, and with none accepted the first
/// refusal is the verdict.
public enum PolicySimulator {
    public static func run(_ policy: CompiledPolicy, _ input: SimulationInput) async -> SimulationResult {
        var driver = SimulatedSession(policy: injecting(input.injected, into: policy), input: input)
        return await driver.run()
    }

    /// The policy with injected results in place of the checks they name.
    public static func injecting(_ injected: [String: InjectedResult], into policy: CompiledPolicy) -> CompiledPolicy {
        let checks = policy.checks.map { pc -> PolicyCheck in
            guard let inj = injected[pc.check.name] else { return pc }
            return PolicyCheck(InjectedCheck(name: pc.check.name, stages: pc.check.stages, fixed: inj), onError: pc.onError)
        }
        return CompiledPolicy(name: policy.name, version: policy.version, path: policy.path, description: policy.description,
                              monitor: policy.monitor, deferRejection: policy.deferRejection, checks: checks, rules: policy.rules,
                              thresholds: policy.thresholds, checkTimeout: policy.checkTimeout, files: policy.files)
    }

    /// The trace as `policy simulate` prints it.
    public static func describe(_ r: SimulationResult, policy: CompiledPolicy) -> String {
        var out = "policy \(policy.name) version \(policy.version)\(policy.path.map { " (\($0))" } ?? "")\(policy.monitor ? " [monitor mode]" : "")\n"
        for s in r.steps {
            out += "\n\(s.stage.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(s.label)\n"
            if s.verdicts.isEmpty { out += "    (nothing to check)\n" }
            for v in s.verdicts {
                var line = "    "
                if v.check == "policy", let rule = v.rule {
                    line += "rule \(rule)\(v.place.map { " (\($0))" } ?? ""): \(v.result)"
                } else if v.check == "policy" || v.check == "relay" {
                    line += "\(v.check): \(v.result)"
                } else {
                    line += "check \(v.check): \(v.result)"
                }
                if v.action != "score" { line += " -> \(v.action)" }
                if let rep = v.reply, v.would == nil { line += " \(rep.summary)" }
                if v.score != 0 { line += " score \(v.score > 0 ? "+" : "")\(FactValue.format(v.score))" }
                if let w = v.would { line += " [monitor: would \(w)]" }
                if let d = v.deferredTo { line += " [deferred to \(d.rawValue)]" }
                if let o = v.overriddenBy { line += " [overridden by rule \(o)]" }
                out += line + "\n"
                if let reason = v.reason { out += "        why: \(reason)\n" }
                if !v.facts.isEmpty { out += "        facts: \(v.facts.map { "\($0.0)=\($0.1.isEmpty ? "\"\"" : $0.1)" }.joined(separator: ", "))\n" }
                for h in v.headers { out += "        header: \(h.name): \(h.value)\n" }
            }
            if let rep = s.reply { out += "    => \(rep.summary)\n" }
        }
        out += "\nverdict: \(r.action)"
        if r.action != "accept" { out += " at \(r.stage.rawValue)" }
        if let rep = r.reply { out += ": \(rep.summary)" } else { out += " (the message would be forwarded)" }
        out += "\nscore: \(FactValue.format(r.score))\n"
        if !r.headers.isEmpty { out += "headers added: \(r.headers.map { "\($0.name): \($0.value)" }.joined(separator: "; "))\n" }
        if !r.would.isEmpty { out += "monitor mode held back: \(r.would.joined(separator: "; "))\n" }
        return out
    }
}
