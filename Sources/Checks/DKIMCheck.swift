import Foundation
import PolicyEngine
import SMTPProtocol
import DNSResolver
import MailAuth

/// DKIM (RFC 6376) at end of data: every signature of the message, verified as it streamed in
/// (libopendkim, keys through the project's resolver). The check itself only reports: facts
/// for the rules (pass for a domain, any pass, all failed, partial bodies) and the
/// `Authentication-Results:` `dkim=` entries (RFC 8601, header.d/s/b). Refusing is the
/// rules' business (see rules/dkim.rules).
public struct DKIMCheck: StreamingCheck {
    public struct Options: Sendable {
        /// Signatures verified per message; the rest are ignored.
        public var maxSignatures = 5
        public var keyTimeout = 10.0
        /// Score when the message has signatures and none passes.
        public var allFailedScore: Double = 0
        public init() {}
    }

    public let name = "dkim"
    public let stages: Set<Stage> = [.message]
    public let options: Options
    let resolver: DNSResolver

    public init(options: Options, resolver: DNSResolver) {
        self.options = options
        self.resolver = resolver
    }

    public static let results = ["pass", "fail", "none", "policy", "neutral", "temperror", "permerror"]
    public static let facts: [FactDecl] = [
        FactDecl("dkim.pass", .keyed(.bool), .message, "a signature of this domain verified: dkim.pass(\"example.com\")"),
        FactDecl("dkim.partial", .keyed(.bool), .message, "this domain's passing signature covers only part of the body (l=)"),
        FactDecl("dkim.domains", .set, .message, "domains with a passing signature"),
        FactDecl("dkim.any_pass", .bool, .message, "at least one signature verified"),
        FactDecl("dkim.all_failed", .bool, .message, "the message has signatures and none verified"),
        FactDecl("dkim.count", .number, .message, "signatures verified (at most maxSignatures)"),
    ]

    final class Observer: MessageObserver {
        let verifier: DKIMVerifier
        init(_ v: DKIMVerifier) { verifier = v }
        func header(_ field: [UInt8]) { verifier.header(field) }
        func endOfHeaders() { verifier.endOfHeaders() }
        func body(_ chunk: [UInt8]) { verifier.body(chunk) }
        func finish() async -> any Sendable { await verifier.finish() }
    }

    public func makeObserver() -> MessageObserver {
        Observer(DKIMVerifier(resolver: resolver, maxSignatures: options.maxSignatures, keyTimeout: .milliseconds(Int(options.keyTimeout * 1000))))
    }

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        let sigs = context.streamed[name] as? [DKIMSignatureResult] ?? []
        var pass: [String: FactValue] = [:], partial: [String: FactValue] = [:]
        for s in sigs where s.result == .pass {
            pass[s.domain] = .bool(true)
            if s.partial { partial[s.domain] = .bool(true) }
        }
        let anyPass = !pass.isEmpty
        let allFailed = !sigs.isEmpty && !anyPass
        let facts: [String: FactValue] = ["pass": .keyed(pass), "partial": .keyed(partial), "domains": .strings(Array(pass.keys)),
                                          "any_pass": .bool(anyPass), "all_failed": .bool(allFailed), "count": .number(Double(sigs.count))]
        let entries = sigs.isEmpty ? ["dkim=none"] : sigs.map(DKIMCheck.resultEntry)
        let header = HeaderField("Authentication-Results", "\(context.receiver); " + entries.joined(separator: ";\r\n\t"))
        let reason = sigs.isEmpty ? "no DKIM signature"
            : sigs.map { "d=\($0.domain) s=\($0.selector) \($0.algorithm)\($0.keyBits.map { "/\($0)" } ?? ""): \($0.result.rawValue) (\($0.reason))" }.joined(separator: "; ")
        let result: String
        if sigs.isEmpty { result = "none" }
        else if anyPass { result = "pass" }
        else if sigs.contains(where: { $0.result == .temperror }) {
            var r = CheckResult.failure(reason, result: "temperror")
            r.headers = [header]
            r.facts = facts
            return r
        } else if sigs.allSatisfy({ $0.result == .permerror }) { result = "permerror" }
        else if sigs.allSatisfy({ $0.result == .policy }) { result = "policy" }
        else { result = "fail" }
        return CheckResult(.continue, result: result, reason: reason, score: allFailed ? options.allFailedScore : 0, headers: [header], facts: facts)
    }

    /// One `dkim=` entry of Authentication-Results (RFC 8601 §2.7.1, header.b per RFC 6008).
    static func resultEntry(_ s: DKIMSignatureResult) -> String {
        var e = "dkim=\(s.result.rawValue)"
        // d=, s=, i= and b= are the signer's text: quoted where they are not plain tokens.
        if s.result != .pass { e += " reason=\(HeaderText.quoted(s.reason))" }
        else if s.partial { e += " reason=\"partial body (l=\(s.bodyLength ?? 0))\"" }
        e += " header.d=\(HeaderText.pvalue(s.domain)) header.s=\(HeaderText.pvalue(s.selector))"
        if let i = s.identity { e += " header.i=\(HeaderText.pvalue(i))" }
        e += " header.a=\(HeaderText.pvalue(s.algorithm))"
        // header.b as OpenDKIM writes it: base64 characters only, so nothing else can appear.
        let b = s.headerB.filter { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/") }.prefix(8)
        if !b.isEmpty { e += " header.b=\(b)" }
        return e
    }
}
