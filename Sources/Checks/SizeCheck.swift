/// Checks: the checks that plug into the stage pipeline, one type per check.
///
/// Each check reads facts from the `CheckContext`, returns a verdict, and knows nothing of
/// sockets or logs. The foundation ships the message-size and HELO-syntax checks; DNSBL,
/// SPF, DKIM and greylisting arrive in their own issues and register in `CheckRegistry`.
import PolicyEngine
import SMTPProtocol

/// Enforces the listener's maxmessagesize (RFC 1870): refuses early on `MAIL … SIZE=` and
/// at end of data when the content was larger than allowed.
public struct SizeCheck: Check {
    public let name = "size"
    public let waits = false
    public let stages: Set<Stage> = [.mail, .message]

    public init() {}

    public static let tooBig = SMTPServerStateMachine.messageTooBig

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        let max = context.maxMessageSize
        guard max > 0 else { return .pass("unlimited") }
        switch stage {
        case .mail:
            guard let declared = context.mailParameters?.size else { return .pass("undeclared") }
            if declared > max {
                return CheckResult(.reject(SizeCheck.tooBig), result: "oversize",
                                   reason: "declared SIZE=\(declared) exceeds maxmessagesize \(max)")
            }
            return .pass("pass", reason: "declared SIZE=\(declared)")
        case .message:
            if context.messageTruncated || context.messageSize > max {
                return CheckResult(.reject(SizeCheck.tooBig), result: "oversize",
                                   reason: "message of \(context.messageSize)\(context.messageTruncated ? "+" : "") octets exceeds maxmessagesize \(max)")
            }
            return .pass("pass")
        default:
            return .pass("skipped")
        }
    }
}
