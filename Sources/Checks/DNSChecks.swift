import Foundation
import PolicyEngine
import SMTPProtocol
import DNSResolver

/// What a DNS-based check does when its test fails: nothing but facts, a score, or a refusal.
public enum DNSCheckEffect: String, Sendable {
    case off, score, reject
}

/// The client's reverse name, forward-confirmed (PTR, then A/AAAA back to the client, as
/// Postfix' reject_unknown_client_hostname), and whether it looks dynamic. The verified
/// name becomes `client.ptr` for every later rule and check. Refusing is off by default:
/// many legitimate servers have poor reverse DNS.
public struct ReverseDNSCheck: Check {
    public struct Options: Sendable {
        /// When the reverse name is missing or does not confirm.
        public var requireConfirmed: DNSCheckEffect = .off
        public var unconfirmedScore: Double = 1
        /// When the name matches a pattern of `patterns`.
        public var dynamic: DNSCheckEffect = .off
        public var dynamicScore: Double = 1
        public var patterns: [Glob] = []
        public var checkAuthorized = false
        public init() {}
    }

    public let name = "rdns"
    public let stages: Set<Stage> = [.connect]
    public let options: Options
    let resolver: DNSResolver

    public init(options: Options, resolver: DNSResolver) {
        self.options = options
        self.resolver = resolver
    }

    public static let results = ["pass", "mismatch", "none", "dynamic", "skipped", "temperror"]
    public static let facts: [FactDecl] = [
        FactDecl("rdns.name", .string, .connect, "the forward-confirmed reverse name; empty when there is none"),
        FactDecl("rdns.names", .set, .connect, "every PTR name of the client"),
        FactDecl("rdns.dynamic", .bool, .connect, "the reverse name matches a dynamic pattern"),
    ]

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        let ip = context.clientIP
        if context.clientAuthorized && !options.checkAuthorized { return .pass("skipped", reason: "client in authorizedAddresses") }
        let ptrName = DNSResolver.reversedName(ip, zone: ip.isIPv4 ? "in-addr.arpa" : "ip6.arpa")
        let ptr = await resolver.query(ptrName, .ptr)
        var names: [String] = []
        switch ptr {
        case .tempFail(let why): return .failure("PTR lookup for \(ip): \(why)", result: "temperror")
        case .nxdomain, .noData: break
        case .records(let r):
            for case .ptr(let n) in r.prefix(10) { names.append(n) }
        }
        var verified: String?
        var tempFailure: String?
        for n in names {
            switch await resolver.addresses(n) {
            case .records(let r): if r.contains(where: { $0.address == ip }) { verified = n }
            case .tempFail(let why): tempFailure = "\(n): \(why)"
            default: break
            }
            if verified != nil { break }
        }
        if verified == nil, let t = tempFailure { return .failure("forward lookup of \(t)", result: "temperror") }
        let dynamic = (verified ?? names.first).map { n in options.patterns.contains { $0.matches(n) } } ?? false
        let facts: [String: FactValue] = ["name": .string(verified ?? ""), "names": .strings(names), "dynamic": .bool(dynamic)]
        if let v = verified {
            var r = verdict(v, dynamic: dynamic, facts: facts)
            r.clientPTR = v
            return r
        }
        return unconfirmed(ip, names: names, facts: facts)
    }

    func verdict(_ v: String, dynamic: Bool, facts: [String: FactValue]) -> CheckResult {
        guard dynamic else {
            return CheckResult(.continue, result: "pass", reason: "the reverse name \(v) resolves back to the client", facts: facts)
        }
        let why = "\(v) looks dynamic"
        switch options.dynamic {
        case .reject:
            return CheckResult(.reject(SMTPReply(550, "5.7.1", "Client host rejected: \(v) looks like a dynamic address; use your provider's relay")),
                               result: "dynamic", reason: why, facts: facts)
        case .score: return CheckResult(.continue, result: "dynamic", reason: why, score: options.dynamicScore, facts: facts)
        case .off: return CheckResult(.continue, result: "dynamic", reason: why, facts: facts)
        }
    }

    func unconfirmed(_ ip: IPAddress, names: [String], facts: [String: FactValue]) -> CheckResult {
        let result = names.isEmpty ? "none" : "mismatch"
        let why = names.isEmpty ? "\(ip) has no reverse name" : "no PTR name of \(ip) (\(names.joined(separator: ", "))) resolves back to it"
        switch options.requireConfirmed {
        case .reject:
            return CheckResult(.reject(SMTPReply(550, "5.7.25", "Client host rejected: cannot find your hostname, [\(ip)]")),
                               result: result, reason: why, facts: facts)
        case .score: return CheckResult(.continue, result: result, reason: why, score: options.unconfirmedScore, facts: facts)
        case .off: return CheckResult(.continue, result: result, reason: why, facts: facts)
        }
    }
}

/// The HELO name resolves (A/AAAA), and it is the client's verified reverse name (as
/// Postfix' reject_unknown_helo_hostname; the second is stricter than most sites want).
/// Address literals are not looked up. Off by default.
public struct HeloDNSCheck: Check {
    public struct Options: Sendable {
        public var requireResolves: DNSCheckEffect = .off
        public var resolvesScore: Double = 1
        public var requireMatchesPTR: DNSCheckEffect = .off
        public var matchScore: Double = 1
        public var checkAuthorized = false
        public init() {}
    }

    public let name = "helodns"
    public let stages: Set<Stage> = [.helo]
    public let options: Options
    let resolver: DNSResolver

    public init(options: Options, resolver: DNSResolver) {
        self.options = options
        self.resolver = resolver
    }

    public static let results = ["pass", "unresolvable", "mismatch", "skipped", "temperror"]
    public static let facts: [FactDecl] = [
        FactDecl("helodns.resolves", .bool, .helo, "the HELO name has an A or AAAA record"),
        FactDecl("helodns.matches_ptr", .bool, .helo, "the HELO name is the client's verified reverse name"),
    ]

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        guard let helo = context.helo else { return .pass("skipped") }
        if context.clientAuthorized && !options.checkAuthorized { return .pass("skipped", reason: "client in authorizedAddresses") }
        guard case .fqdn = HeloArgument(helo) else { return .pass("skipped", reason: "not a domain name") }
        let name = canonicalName(helo)
        let matches = context.clientPTR.map { canonicalName($0) == name } ?? false
        let resolves: Bool
        switch await resolver.addresses(name) {
        case .records: resolves = true
        case .nxdomain, .noData: resolves = false
        case .tempFail(let why): return .failure("\(name): \(why)", result: "temperror")
        }
        let facts: [String: FactValue] = ["resolves": .bool(resolves), "matches_ptr": .bool(matches)]
        if !resolves {
            let why = "HELO name \(name) has no address"
            switch options.requireResolves {
            case .reject: return CheckResult(.reject(SMTPReply(550, "5.7.1", "<\(name)>: Helo command rejected: Host not found")), result: "unresolvable", reason: why, facts: facts)
            case .score: return CheckResult(.continue, result: "unresolvable", reason: why, score: options.resolvesScore, facts: facts)
            case .off: return CheckResult(.continue, result: "unresolvable", reason: why, facts: facts)
            }
        }
        if !matches && options.requireMatchesPTR != .off {
            let why = "HELO name \(name) is not the client's reverse name \(context.clientPTR ?? "(none)")"
            if options.requireMatchesPTR == .reject {
                return CheckResult(.reject(SMTPReply(550, "5.7.1", "<\(name)>: Helo command rejected: does not match your reverse name")), result: "mismatch", reason: why, facts: facts)
            }
            return CheckResult(.continue, result: "mismatch", reason: why, score: options.matchScore, facts: facts)
        }
        return CheckResult(.continue, result: "pass", reason: matches ? "\(name) resolves and is the reverse name" : "\(name) resolves", facts: facts)
    }
}
