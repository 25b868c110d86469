import PolicyEngine
import SMTPProtocol

/// HELO/EHLO argument syntax (RFC 5321 §4.1.1.1): a fully qualified domain name or an
/// address literal `[1.2.3.4]` / `[IPv6:…]`. Optionally an address literal must be the
/// client's own address. As Postfix' `permit_mynetworks` before `reject_invalid_helo_hostname`,
/// clients in authorizedAddresses are not checked unless `checkAuthorized` is set.
public struct HeloCheck: Check {
    public struct Options: Sendable {
        /// An address literal must equal the client's address.
        public var literalMustMatchClient = false
        /// Also check clients that match authorizedAddresses.
        public var checkAuthorized = false
        /// Refuse (true) or only score (false) a bad HELO.
        public var reject = true
        /// Score added for a bad HELO when not rejecting.
        public var score: Double = 1
        public init() {}
    }

    public let name = "helo"
    public let waits = false
    public let stages: Set<Stage> = [.helo]
    public let options: Options

    public init(options: Options = Options()) { self.options = options }

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        guard let helo = context.helo else { return .pass("none") }
        if context.clientAuthorized && !options.checkAuthorized {
            return .pass("skipped", reason: "client in authorizedAddresses")
        }
        let problem: (String, SMTPReply)?
        switch HeloArgument(helo) {
        case .fqdn:
            problem = nil
        case .addressLiteral(let ip):
            if options.literalMustMatchClient && ip != context.clientIP {
                problem = ("address literal \(ip) is not the client address \(context.clientIP)",
                           SMTPReply(550, "5.7.1", "Helo command rejected: address literal does not match your address"))
            } else {
                problem = nil
            }
        case .invalid(let why):
            let code = why.contains("fully qualified") ? 504 : 501
            let text = code == 504 ? "Helo command rejected: need fully-qualified hostname" : "Helo command rejected: Invalid name"
            problem = (why, SMTPReply(code, "5.5.2", text))
        }
        guard let (why, reply) = problem else { return .pass("pass") }
        if options.reject {
            return CheckResult(.reject(reply), result: "invalid", reason: why)
        }
        return CheckResult(.continue, result: "invalid", reason: why, score: options.score)
    }
}
