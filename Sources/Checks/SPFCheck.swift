import Foundation
import PolicyEngine
import SMTPProtocol
import DNSResolver
import MailAuth

/// SPF (RFC 7208) for the HELO identity (at helo, facts only unless told) and the MAIL FROM
/// identity (at mail). Default actions: fail → `550 5.7.23`, temperror → `451 4.7.24`
/// (RFC 7372 codes, through onError: tempfail), softfail and neutral → score, permerror →
/// facts only. The forwarded message gets `Received-SPF:` (RFC 7208 §9.1) and an `spf=`
/// `Authentication-Results:` entry (RFC 8601).
public struct SPFCheck: Check {
    public struct Options: Sendable {
        public var fail: DNSCheckEffect = .reject
        public var failScore: Double = 5
        public var softfailScore: Double = 2
        public var neutralScore: Double = 0
        public var noneScore: Double = 0
        public var permerror: DNSCheckEffect = .off
        public var permerrorScore: Double = 1
        /// What a fail of the HELO identity does (off: facts only).
        public var heloFail: DNSCheckEffect = .off
        public var heloFailScore: Double = 2
        public var checkAuthorized = false
        public init() {}
    }

    public let name = "spf"
    public let stages: Set<Stage> = [.helo, .mail]
    public let options: Options
    let resolver: DNSResolver

    public init(options: Options, resolver: DNSResolver) {
        self.options = options
        self.resolver = resolver
    }

    public static let results = SPFResult.allCases.map(\.rawValue) + ["skipped"]
    public static let facts: [FactDecl] = [
        FactDecl("spf.helo", .string, .helo, values: SPFResult.allCases.map(\.rawValue) + ["skipped"], "the SPF result of the HELO identity"),
        FactDecl("spf.explanation", .string, .mail, "the fail explanation (exp=), empty when none"),
        FactDecl("spf.mechanism", .string, .mail, "the term that decided (e.g. -all)"),
        FactDecl("spf.domain", .string, .mail, "the domain checked"),
    ]

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        if context.clientAuthorized && !options.checkAuthorized { return .pass("skipped", reason: "client in authorizedAddresses") }
        let evaluator = SPFEvaluator(resolver: resolver, receiver: context.receiver)
        let ip = context.clientIP
        let helo = context.helo ?? ""
        if stage == .helo {
            guard case .fqdn = HeloArgument(helo) else { return CheckResult(.continue, result: "skipped", reason: "HELO is not a domain name", facts: ["helo": .string("skipped")]) }
            let o = await evaluator.check(ip: ip, sender: nil, helo: helo)
            let facts: [String: FactValue] = ["helo": .string(o.result.rawValue)]
            let why = describe(o, identity: "helo \(helo)")
            if o.result == .fail {
                switch options.heloFail {
                case .reject:
                    return CheckResult(.reject(SMTPReply(550, "5.7.23", "<\(helo)>: HELO rejected: SPF fail\(o.explanation.map { ": \($0)" } ?? "")")),
                                       result: o.result.rawValue, reason: why, facts: facts)
                case .score: return CheckResult(.continue, result: o.result.rawValue, reason: why, score: options.heloFailScore, facts: facts)
                case .off: break
                }
            }
            return CheckResult(.continue, result: o.result.rawValue, reason: why, facts: facts)
        }
        guard let sender = context.sender else { return .pass("skipped") }
        let address = sender.mailbox.map(\.description) ?? ""
        let o = await evaluator.check(ip: ip, sender: address, helo: helo)
        let envelope = address.isEmpty ? "postmaster@\(helo)" : address
        let facts: [String: FactValue] = ["explanation": .string(o.explanation ?? ""), "mechanism": .string(o.mechanism ?? ""),
                                          "domain": .string(o.domain)]
        let why = describe(o, identity: "mailfrom \(envelope)")
        let headers = [HeaderField("Received-SPF", receivedSPF(o, ip: ip, envelope: envelope, helo: helo, receiver: context.receiver)),
                       HeaderField("Authentication-Results", "\(context.receiver); spf=\(o.result.rawValue) smtp.mailfrom=\(HeaderText.pvalue(envelope))")]
        switch o.result {
        case .fail:
            switch options.fail {
            case .reject:
                let text = o.explanation.map { "<\(envelope)>: SPF fail: \($0)" }
                    ?? "<\(envelope)>: SPF fail: \(o.domain) does not designate \(ip) as permitted sender"
                return CheckResult(.reject(SMTPReply(550, "5.7.23", text)), result: "fail", reason: why, headers: headers, facts: facts)
            case .score: return CheckResult(.continue, result: "fail", reason: why, score: options.failScore, headers: headers, facts: facts)
            case .off: return CheckResult(.continue, result: "fail", reason: why, headers: headers, facts: facts)
            }
        case .softfail: return CheckResult(.continue, result: "softfail", reason: why, score: options.softfailScore, headers: headers, facts: facts)
        case .neutral: return CheckResult(.continue, result: "neutral", reason: why, score: options.neutralScore, headers: headers, facts: facts)
        case .none: return CheckResult(.continue, result: "none", reason: why, score: options.noneScore, headers: headers, facts: facts)
        case .pass: return CheckResult(.continue, result: "pass", reason: why, headers: headers, facts: facts)
        case .permerror:
            switch options.permerror {
            case .reject:
                return CheckResult(.reject(SMTPReply(550, "5.7.24", "<\(envelope)>: SPF permanent error: \(o.problem ?? "invalid record")")),
                                   result: "permerror", reason: why, headers: headers, facts: facts)
            case .score: return CheckResult(.continue, result: "permerror", reason: why, score: options.permerrorScore, headers: headers, facts: facts)
            case .off: return CheckResult(.continue, result: "permerror", reason: why, headers: headers, facts: facts)
            }
        case .temperror:
            return CheckResult(.tempfail(SMTPReply(451, "4.7.24", "<\(envelope)>: SPF temporary error, try again later")),
                               result: "temperror", reason: why, headers: headers, facts: facts, backendError: true)
        }
    }

    func describe(_ o: SPFOutcome, identity: String) -> String {
        var s = "\(identity): \(o.result.rawValue)"
        if let m = o.mechanism { s += " by \(m)" }
        s += " (domain \(o.domain), \(o.lookups) DNS-querying terms, \(o.voidLookups) void)"
        if let p = o.problem { s += ": \(p)" }
        if let e = o.explanation { s += "; explanation: \(e)" }
        return s
    }

    /// RFC 7208 §9.1.
    /// The sender and HELO name are the client's text: escaped in the comment, quoted in
    /// the key-value pairs where they are not dot-atoms.
    func receivedSPF(_ o: SPFOutcome, ip: IPAddress, envelope sender: String, helo: String, receiver: String) -> String {
        let envelope = HeaderText.comment(sender)
        let comment: String
        switch o.result {
        case .pass: comment = "\(receiver): domain of \(envelope) designates \(ip) as permitted sender"
        case .fail: comment = "\(receiver): domain of \(envelope) does not designate \(ip) as permitted sender"
        case .softfail: comment = "\(receiver): domain of transitioning \(envelope) does not designate \(ip) as permitted sender"
        case .neutral: comment = "\(receiver): \(ip) is neither permitted nor denied by domain of \(envelope)"
        case .none: comment = "\(receiver): domain of \(envelope) does not provide an SPF record"
        case .temperror: comment = "\(receiver): error in processing during lookup of \(envelope)"
        case .permerror: comment = "\(receiver): permanent error in processing domain of \(envelope)"
        }
        var kv = "client-ip=\(ip); envelope-from=\(HeaderText.quoted(sender)); helo=\(HeaderText.dotAtomOrQuoted(helo.isEmpty ? "unknown" : helo)); "
            + "receiver=\(HeaderText.dotAtomOrQuoted(receiver)); identity=mailfrom"
        if let m = o.mechanism { kv += "; mechanism=\(HeaderText.quoted(m))" }
        if let p = o.problem, o.result == .permerror || o.result == .temperror { kv += "; problem=\(HeaderText.quoted(String(p.prefix(200))))" }
        return "\(o.result.rawValue) (\(comment)) \(kv)"
    }
}
