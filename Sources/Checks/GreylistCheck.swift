import Foundation
import PolicyEngine
import SMTPProtocol
import Greylist

/// Greylisting (as postgrey and Haraka do it): the first time a triplet (client network,
/// sender, recipient) is seen the recipient gets 451 4.7.1; a retry after the delay and
/// within the window passes, and from then on the triplet passes for its lifetime. The
/// store, keys and times are the gateway's (`greylist:` in its configuration); the policy
/// chooses where it acts and whom it spares.
public struct GreylistCheck: Check, RuleGreylisting {
    public enum Mode: String, Sendable {
        /// Every recipient that is not exempt is greylisted.
        case all
        /// Only recipients for which a rule says `greylist`.
        case rules
    }

    public struct Options: Sendable {
        public var mode: Mode = .all
        /// rcpt (default) or message (end of DATA: every recipient at once).
        public var stage: Stage = .rcpt
        public var allowClients: [IPNetwork] = []
        /// Verified reverse names (client.ptr) in these domains or below them.
        public var allowReverseDomains: [String] = []
        public var allowSenderDomains: [String] = []
        /// `user@domain`, `@domain` or `user@` (any domain).
        public var allowRecipients: [String] = []
        public init() {}
    }

    public let name = "greylist"
    public let options: Options
    public var stages: Set<Stage> { [options.stage] }
    public var greylistsByRule: Bool { options.mode == .rules }
    let service: GreylistService

    public init(options: Options, service: GreylistService) {
        self.options = options
        self.service = service
    }

    public static let results = ["new", "early", "passed", "known", "allowed", "exempt", "unchecked", "error"]
    public static let facts: [FactDecl] = [
        FactDecl("greylist.state", .string, .rcpt,
                 "new, early (retried too soon), passed (retried in time), known, allowed (client allow-listed), exempt, unchecked (mode: rules, no rule asked)"),
        FactDecl("greylist.remaining", .number, .rcpt, "seconds until a retry passes (new, early); 0 otherwise"),
    ]

    /// Recipients never greylisted, whatever the lists say (RFC 5321 4.5.1, RFC 2142).
    static let roleAccounts: Set<String> = ["postmaster", "abuse"]

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        if options.mode == .rules {
            if let why = exemption(context, recipients: recipients(stage, context)) { return Self.exempt(why) }
            return CheckResult(.continue, result: "unchecked", reason: "mode rules: greylisted only when a rule says so",
                               facts: ["state": .string("unchecked"), "remaining": .number(0)])
        }
        return await greylist(stage: stage, context: context)
    }

    public func greylist(stage: Stage, context: CheckContext) async -> CheckResult {
        let all = recipients(stage, context)
        if let why = exemption(context, recipients: all) { return Self.exempt(why) }
        let client = GreylistKey.client(context.clientIP, ptr: context.clientPTR, service.config.key)
        let sender = GreylistKey.sender(context.sender?.description ?? "")
        var worst: (GreylistDecision, String)?
        var passed: (GreylistDecision, String)?
        for r in all where !isExemptRecipient(r) {
            let key = GreylistKey.key(client: client, sender: sender, recipient: r.description)
            let d: GreylistDecision
            do {
                d = try await service.check(key: key, client: client)
            } catch {
                return .failure("greylist store (\(service.config.store.rawValue)): \(error)", result: "error")
            }
            if d.isDelay {
                if worst == nil || d.remaining > worst!.0.remaining { worst = (d, key) }
            } else if passed == nil {
                passed = (d, key)
            }
        }
        let facts: (GreylistDecision) -> [String: FactValue] = { ["state": .string($0.state.rawValue), "remaining": .number(Double($0.remaining))] }
        if let (d, key) = worst {
            let why = d.state == .new ? "triplet \(key) first seen" : "triplet \(key) retried too early"
            return CheckResult(.tempfail(SMTPReply(451, "4.7.1", "Greylisted: please try again in \(d.remaining) seconds")),
                               result: d.state.rawValue, reason: "\(why); a retry passes in \(d.remaining) s", facts: facts(d))
        }
        guard let (d, key) = passed else { return Self.exempt("every recipient is exempt") }
        let why: String
        switch d.state {
        case .allowed: why = "client \(client) is on the allowlist"
        case .passed: why = "triplet \(key) retried in time"
        default: why = "triplet \(key) known"
        }
        return CheckResult(.continue, result: d.state.rawValue, reason: why, facts: facts(d))
    }

    static func exempt(_ why: String) -> CheckResult {
        CheckResult(.continue, result: "exempt", reason: why, facts: ["state": .string("exempt"), "remaining": .number(0)])
    }

    func recipients(_ stage: Stage, _ c: CheckContext) -> [Mailbox] {
        stage == .rcpt ? (c.recipient.map { [$0] } ?? []) : c.recipients
    }

    /// Why this transaction is not greylisted at all, if it is not.
    func exemption(_ c: CheckContext, recipients: [Mailbox]) -> String? {
        if let u = c.authenticatedUser { return "authenticated as \(u)" }
        if c.clientAuthorized { return "client in authorizedAddresses" }
        if let n = options.allowClients.first(where: { $0.contains(c.clientIP) }) { return "client in allow list (\(n))" }
        if let ptr = c.clientPTR, let d = options.allowReverseDomains.first(where: { Self.within(ptr, $0) }) {
            return "reverse name \(ptr) in allow list (\(d))"
        }
        if let s = c.sender?.mailbox, let d = options.allowSenderDomains.first(where: { Self.within(s.domain, $0) }) {
            return "sender domain \(s.domain) in allow list (\(d))"
        }
        if !recipients.isEmpty && recipients.allSatisfy(isExemptRecipient) {
            return recipients.count == 1 ? "recipient \(recipients[0]) is never greylisted" : "every recipient is exempt"
        }
        return nil
    }

    func isExemptRecipient(_ m: Mailbox) -> Bool {
        let local = m.localPart.lowercased(), domain = m.domainKey
        if Self.roleAccounts.contains(local) { return true }
        return options.allowRecipients.contains { e in
            if e.hasPrefix("@") { return Self.within(domain, String(e.dropFirst())) }
            if e.hasSuffix("@") { return local == e.dropLast() }
            return e == "\(local)@\(domain)"
        }
    }

    /// `name` is `domain` or below it.
    static func within(_ name: String, _ domain: String) -> Bool {
        var n = name.lowercased()
        if n.hasSuffix(".") { n.removeLast() }
        return n == domain || n.hasSuffix("." + domain)
    }
}
