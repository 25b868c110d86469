/// PolicyEngine: what the gateway decides, stage by stage, and why.
///
/// A session passes through the stages connect, helo, mail, rcpt, data (headers complete)
/// and message (end of data). A policy (`CompiledPolicy`, loaded by `PolicyLoader` from
/// `policies/*.yaml` and the rule files it names) chooses the checks; at each stage
/// `PolicyRun` runs that stage's checks in order (each within its time budget, its backend
/// failures turned into a pass or a 4xx by its `onError`), then the stage's rules in the
/// rules language (`Rules/`), then at end of data the score thresholds; it applies monitor
/// mode and deferred rejection and reports every verdict for the decision log. The
/// simulator and the policy test runner drive the same `PolicyRun` without a network. A
/// check that overruns its budget tempfails: it is never taken as an accept and never turns
/// into a hard reject.
import SMTPProtocol
import Foundation

/// What a check decided.
public enum Action: Sendable, Equatable {
    case `continue`
    case accept
    case reject(SMTPReply)
    case tempfail(SMTPReply)

    public var name: String {
        switch self {
        case .continue: return "continue"
        case .accept: return "accept"
        case .reject: return "reject"
        case .tempfail: return "tempfail"
        }
    }
    public var reply: SMTPReply? {
        switch self {
        case .reject(let r), .tempfail(let r): return r
        default: return nil
        }
    }
}

public struct CheckResult: Sendable {
    public var action: Action
    /// The check's own result word: "pass", "fail", "invalid", "oversize", "skipped"…
    public var result: String
    public var reason: String?
    public var score: Double
    public var headers: [HeaderField]
    /// Facts for the rules, by their name after the check's (`listed` → `dnsbl.listed`).
    public var facts: [String: FactValue]
    /// The check could not do its work (DNS, store, network down): the policy's `onError`
    /// for the check decides between passing and 4xx.
    public var backendError: Bool
    /// Give a reject or tempfail decided at connect, helo or mail at this later stage
    /// (deferred rejection, as the check's own option).
    public var deferTo: Stage?
    /// The client's verified reverse name, when this check found it: later stages see it as
    /// `CheckContext.clientPTR` and the fact `client.ptr`.
    public var clientPTR: String?

    public init(_ action: Action, result: String, reason: String? = nil, score: Double = 0, headers: [HeaderField] = [],
                facts: [String: FactValue] = [:], backendError: Bool = false, deferTo: Stage? = nil) {
        self.deferTo = deferTo
        self.action = action
        self.result = result
        self.reason = reason
        self.score = score
        self.headers = headers
        self.facts = facts
        self.backendError = backendError
    }

    /// The backend of the check failed; `reason` says how.
    public static func failure(_ reason: String, result: String = "error") -> CheckResult {
        CheckResult(.continue, result: result, reason: reason, backendError: true)
    }

    public static func pass(_ result: String = "pass", reason: String? = nil) -> CheckResult {
        CheckResult(.continue, result: result, reason: reason)
    }
}

/// The facts of a session a check may read, as of the stage it runs at.
public struct CheckContext: Sendable {
    public var sessionID: String
    public var listener: String
    public var clientIP: IPAddress
    public var clientPort: Int
    /// The client matches the listener's authorizedAddresses.
    public var clientAuthorized: Bool
    /// This gateway's name (helloName): the receiver in trace headers, the authserv-id.
    public var receiver = "localhost"
    /// The verified reverse name of the client, when a check has found it.
    public var clientPTR: String?
    public var authenticatedUser: String?
    public var tls: Bool
    public var heloVerb: String?
    public var helo: String?
    public var sender: ReversePath?
    public var mailParameters: MailParameters?
    /// Recipients accepted so far in this transaction.
    public var recipients: [Mailbox]
    /// The recipient under consideration (rcpt stage).
    public var recipient: Mailbox?
    /// Header fields of the message (data and message stages), unfolded.
    public var headers: [HeaderField]
    /// Octets of message content received (data: so far; message: total).
    public var messageSize: Int
    /// True when the content was larger than the listener allows and was not kept whole.
    public var messageTruncated: Bool
    /// The listener's maxmessagesize in octets, 0 = unlimited.
    public var maxMessageSize: Int
    /// Score accumulated so far in the transaction.
    public var score: Double
    /// What streaming checks found in the message, by check name (message stage).
    public var streamed: [String: any Sendable] = [:]

    public init(sessionID: String, listener: String, clientIP: IPAddress, clientPort: Int,
                clientAuthorized: Bool, maxMessageSize: Int) {
        self.sessionID = sessionID
        self.listener = listener
        self.clientIP = clientIP
        self.clientPort = clientPort
        self.clientAuthorized = clientAuthorized
        self.maxMessageSize = maxMessageSize
        self.tls = false
        self.recipients = []
        self.headers = []
        self.messageSize = 0
        self.messageTruncated = false
        self.score = 0
    }
}

/// The greylist check, as the rule action `greylist` reaches it: with `greylistsByRule`
/// the check only reports facts at its stage, and a rule that says `greylist` asks it to
/// greylist the triplet now.
public protocol RuleGreylisting: Check {
    var greylistsByRule: Bool { get }
    func greylist(stage: Stage, context: CheckContext) async -> CheckResult
}

/// A check that tests its own backend now and then (a DNSBL zone's test points) and says
/// what changed, for the decision log.
public protocol SelfTesting: Sendable {
    func selfTest() async -> [SelfTestReport]
}

public struct SelfTestReport: Sendable, Equatable {
    public var check: String
    public var subject: String
    /// "enabled" or "disabled".
    public var state: String
    public var reason: String
    public init(check: String, subject: String, state: String, reason: String) {
        self.check = check
        self.subject = subject
        self.state = state
        self.reason = reason
    }
}

/// Reads a message as it streams in: header fields (each with its folded lines joined by
/// CRLF, without the last CRLF), the end of the headers, body chunks (with their CRLFs),
/// then gives its findings to the check at the end of data.
public protocol MessageObserver: AnyObject {
    func header(_ field: [UInt8])
    func endOfHeaders()
    func body(_ chunk: [UInt8])
    func finish() async -> any Sendable
}

/// A check that needs the message itself, not only its headers (DKIM). The session makes one
/// observer per transaction and hands its findings to the check in
/// `CheckContext.streamed[name]`.
public protocol StreamingCheck: Check {
    func makeObserver() -> MessageObserver
}

/// A check: a named piece of policy that runs at one or more stages.
public protocol Check: Sendable {
    var name: String { get }
    var stages: Set<Stage> { get }
    /// False for checks that only compute on the context and cannot wait on anything
    /// (no I/O): they skip the time-budget machinery. Anything that asks DNS, a store or
    /// the network must leave this true.
    var waits: Bool { get }
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult
}

extension Check {
    public var waits: Bool { true }
}

/// One verdict as the decision log records it.
public struct VerdictRecord: Sendable {
    public var stage: Stage
    public var check: String
    public var result: String
    public var action: Action
    public var reason: String?
    public var score: Double
    public var durationMicros: Int
}

/// The pipeline's answer for one stage.
public struct StageOutcome: Sendable {
    public var action: Action = .continue
    /// The check that decided (reject, tempfail or accept), if any.
    public var decidedBy: String?
    public var score: Double = 0
    public var headers: [HeaderField] = []
    public init() {}
}

public struct Pipeline: Sendable {
    public let checks: [any Check]
    /// The time budget of one check.
    public let checkTimeout: Duration

    public init(checks: [any Check], checkTimeout: Duration = .seconds(30)) {
        self.checks = checks
        self.checkTimeout = checkTimeout
    }

    public func runs(at stage: Stage) -> Bool { checks.contains { $0.stages.contains(stage) } }

    /// Runs the checks of `stage` in order, reporting each verdict to `record`.
    public func run(_ stage: Stage, context: CheckContext, record: (VerdictRecord) -> Void) async -> StageOutcome {
        var outcome = StageOutcome()
        var ctx = context
        for check in checks where check.stages.contains(stage) {
            let start = ContinuousClock.now
            let result = await evaluate(check, stage: stage, context: ctx)
            let elapsed = ContinuousClock.now - start
            let micros = Int(elapsed.components.seconds) * 1_000_000 + Int(elapsed.components.attoseconds / 1_000_000_000_000)
            record(VerdictRecord(stage: stage, check: check.name, result: result.result, action: result.action,
                                 reason: result.reason, score: result.score, durationMicros: micros))
            outcome.score += result.score
            ctx.score += result.score
            outcome.headers += result.headers
            switch result.action {
            case .continue: continue
            case .accept, .reject, .tempfail:
                outcome.action = result.action
                outcome.decidedBy = check.name
                return outcome
            }
        }
        return outcome
    }

    @inline(never)
    func evaluate(_ check: any Check, stage: Stage, context: CheckContext) async -> CheckResult {
        if !check.waits { return await check.evaluate(stage: stage, context: context) }
        // Race the check against its budget without waiting for a check that ignores
        // cancellation: whichever finishes first answers, the other is cancelled and left.
        let timeout = checkTimeout
        return await firstWithin(timeout, or: {
            CheckResult(.tempfail(SMTPReply(451, "4.4.3", "Temporary policy failure, try again later")),
                        result: "timeout", reason: "check exceeded its time budget of \(timeout)")
        }) {
            await check.evaluate(stage: stage, context: context)
        }
    }
}
