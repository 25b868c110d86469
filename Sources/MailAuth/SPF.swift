import Foundation
import SMTPProtocol
import DNSResolver

/// The results of RFC 7208 §2.6.
public enum SPFResult: String, Sendable, CaseIterable {
    case none, neutral, pass, fail, softfail, temperror, permerror
}

/// What `check_host()` came to, and how.
public struct SPFOutcome: Sendable, Equatable {
    public var result: SPFResult
    /// The domain whose record decided (the top-level one, or an included one for a match).
    public var domain: String
    /// The term that matched ("-all", "ip4:192.0.2.0/24"), or the modifier or problem that decided.
    public var mechanism: String?
    /// For fail: the expanded `exp=` text, when the domain gives one.
    public var explanation: String?
    /// Why, for permerror and temperror.
    public var problem: String?
    /// Every term evaluated and every DNS lookup made, in order.
    public var trace: [String]
    /// DNS-querying terms used (limit 10) and void lookups (limit 2).
    public var lookups: Int
    public var voidLookups: Int
}

/// An RFC 7208 evaluator on the project's resolver. Every limit of §4.6.4 is enforced, so a
/// record an attacker writes costs at most 10 DNS-querying terms (plus 10 names each for mx and
/// ptr), 2 void lookups, and bounded memory.
public struct SPFEvaluator: Sendable {
    public struct Limits: Sendable {
        public var dnsTerms = 10
        public var voidLookups = 2
        public var mxNames = 10
        public var ptrNames = 10
        /// Longest macro expansion kept (RFC 7208 §7.3 cuts domain names to 253).
        public var maxExpansion = 4096
        public init() {}
    }

    let resolver: DNSResolver
    public let limits: Limits
    /// The receiving host, for the `r` macro.
    public let receiver: String

    public init(resolver: DNSResolver, limits: Limits = Limits(), receiver: String = "unknown") {
        self.resolver = resolver
        self.limits = limits
        self.receiver = receiver
    }

    /// check_host() for the MAIL FROM identity (the null sender becomes postmaster@HELO) or,
    /// with `sender` nil, for the HELO identity.
    public func check(ip: IPAddress, sender: String?, helo: String) async -> SPFOutcome {
        var s = sender ?? ""
        if s.isEmpty { s = "postmaster@" + helo }
        guard let at = s.lastIndex(of: "@") else {
            s = "postmaster@" + s
            return await run(ip: ip, sender: s, helo: helo)
        }
        if s[..<at].isEmpty { s = "postmaster" + s[at...] }
        return await run(ip: ip, sender: s, helo: helo)
    }

    func run(ip: IPAddress, sender: String, helo: String) async -> SPFOutcome {
        let domain = SPFEvaluator.domainPart(sender)
        let state = SPFState()
        var ctx = Context(ip: ip, sender: sender, helo: helo, domain: canonicalName(domain))
        let r = await checkHost(&ctx, state: state, depth: 0)
        return SPFOutcome(result: r.result, domain: r.domain, mechanism: r.mechanism, explanation: r.explanation, problem: r.problem,
                          trace: state.trace, lookups: state.lookups, voidLookups: state.voids)
    }

    struct Context {
        var ip: IPAddress
        var sender: String
        var helo: String
        var domain: String
    }

    struct Verdict {
        var result: SPFResult
        var domain: String
        var mechanism: String?
        var explanation: String?
        var problem: String?
    }

    /// Mutable counters shared by one evaluation and its includes.
    final class SPFState: @unchecked Sendable {
        var lookups = 0
        var voids = 0
        var trace: [String] = []
        /// Validated names of the client, for the `p` macro, once asked.
        var pNames: [String]?
        func note(_ s: String, depth: Int) { if trace.count < 500 { trace.append(String(repeating: "  ", count: depth) + s) } }
    }

    struct Failure: Error { var result: SPFResult; var problem: String }

    // MARK: check_host

    func checkHost(_ ctx: inout Context, state: SPFState, depth: Int) async -> Verdict {
        let d = ctx.domain
        guard SPFEvaluator.isValidDomain(d) else {
            state.note("\(d): not a valid domain name: none", depth: depth)
            return Verdict(result: .none, domain: d, problem: "'\(d)' is not a valid domain name")
        }
        state.note("\(d): TXT lookup", depth: depth)
        let txt = await resolver.query(d, .txt)
        var records: [String] = []
        switch txt {
        case .tempFail(let why): return Verdict(result: .temperror, domain: d, problem: "TXT lookup of \(d): \(why)")
        case .nxdomain, .noData:
            return Verdict(result: .none, domain: d, problem: "\(d) has no SPF record")
        case .records(let r):
            for case .txt(let t) in r {
                let lower = t.lowercased()
                if lower == "v=spf1" || lower.hasPrefix("v=spf1 ") { records.append(t) }
            }
        }
        if records.isEmpty { return Verdict(result: .none, domain: d, problem: "\(d) has no SPF record") }
        if records.count > 1 { return Verdict(result: .permerror, domain: d, problem: "\(d) has \(records.count) SPF records") }
        state.note("\(d): \"\(records[0].prefix(300))\"", depth: depth)
        let terms: [Term]
        do {
            terms = try SPFEvaluator.parse(records[0])
        } catch let f as Failure {
            return Verdict(result: f.result, domain: d, problem: "\(d): \(f.problem)")
        } catch {
            return Verdict(result: .permerror, domain: d, problem: "\(d): \(error)")
        }
        do {
            for term in terms {
                guard case .directive(let q, let m) = term.kind else { continue }
                let matched = try await evaluate(m, &ctx, state: state, depth: depth, text: term.text)
                state.note("\(term.text): \(matched ? "match" : "no match")", depth: depth)
                if matched {
                    let result = q.result
                    var v = Verdict(result: result, domain: d, mechanism: term.text)
                    if result == .fail, let exp = terms.first(where: { if case .exp = $0.kind { return true } else { return false } }),
                       case .exp(let spec) = exp.kind {
                        v.explanation = await explanation(spec, ctx, state: state, depth: depth)
                    }
                    return v
                }
            }
            if let r = terms.first(where: { if case .redirect = $0.kind { return true } else { return false } }), case .redirect(let spec) = r.kind {
                try count(state, "redirect")
                await prepare(spec, ctx, state: state, depth: depth)
                let target = try expandDomain(spec, ctx, state: state, explain: false)
                state.note("redirect=\(target)", depth: depth)
                var sub = ctx
                sub.domain = target
                let v = await checkHost(&sub, state: state, depth: depth + 1)
                if v.result == .none {
                    return Verdict(result: .permerror, domain: d, mechanism: r.text, problem: "redirect target \(target) has no SPF record")
                }
                return v
            }
            return Verdict(result: .neutral, domain: d, mechanism: nil, problem: nil)
        } catch let f as Failure {
            return Verdict(result: f.result, domain: d, problem: f.problem)
        } catch {
            return Verdict(result: .permerror, domain: d, problem: "\(error)")
        }
    }

    func count(_ state: SPFState, _ what: String) throws {
        state.lookups += 1
        if state.lookups > limits.dnsTerms {
            throw Failure(result: .permerror, problem: "more than \(limits.dnsTerms) DNS-querying terms (at \(what))")
        }
    }

    func void(_ state: SPFState, _ answer: DNSAnswer, _ what: String) throws {
        switch answer {
        case .nxdomain, .noData:
            state.voids += 1
            if state.voids > limits.voidLookups {
                throw Failure(result: .permerror, problem: "more than \(limits.voidLookups) void lookups (at \(what))")
            }
        default: break
        }
    }

    /// Evaluates one mechanism; throws for temperror and permerror.
    func evaluate(_ m: Mechanism, _ ctx: inout Context, state: SPFState, depth: Int, text: String) async throws -> Bool {
        switch m {
        case .all:
            return true
        case .ip4(let net), .ip6(let net):
            return net.contains(ctx.ip)
        case .include(let spec):
            try count(state, text)
            await prepare(spec, ctx, state: state, depth: depth)
            let target = try expandDomain(spec, ctx, state: state, explain: false)
            var sub = ctx
            sub.domain = target
            let v = await checkHost(&sub, state: state, depth: depth + 1)
            switch v.result {
            case .pass: return true
            case .fail, .softfail, .neutral: return false
            case .temperror: throw Failure(result: .temperror, problem: v.problem ?? "temperror in include:\(target)")
            case .permerror: throw Failure(result: .permerror, problem: v.problem ?? "permerror in include:\(target)")
            case .none: throw Failure(result: .permerror, problem: "include:\(target) has no SPF record")
            }
        case .a(let spec, let v4, let v6):
            try count(state, text)
            if let sp = spec { await prepare(sp, ctx, state: state, depth: depth) }
            let target = try spec.map { try expandDomain($0, ctx, state: state, explain: false) } ?? ctx.domain
            return try await addressMatch(target, ctx.ip, v4: v4, v6: v6, state: state, countVoid: true, depth: depth, term: text)
        case .mx(let spec, let v4, let v6):
            try count(state, text)
            if let sp = spec { await prepare(sp, ctx, state: state, depth: depth) }
            let target = try spec.map { try expandDomain($0, ctx, state: state, explain: false) } ?? ctx.domain
            state.note("MX \(target)", depth: depth + 1)
            let mx = await resolver.query(target, .mx)
            if case .tempFail(let why) = mx { throw Failure(result: .temperror, problem: "MX lookup of \(target): \(why)") }
            try void(state, mx, text)
            let names = mx.records.compactMap { r -> String? in if case .mx(_, let x) = r { return x } else { return nil } }
            if names.count > limits.mxNames { throw Failure(result: .permerror, problem: "\(target) has more than \(limits.mxNames) MX records") }
            for n in names where n != "" {
                if try await addressMatch(n, ctx.ip, v4: v4, v6: v6, state: state, countVoid: false, depth: depth, term: text) { return true }
            }
            return false
        case .ptr(let spec):
            try count(state, text)
            if let sp = spec { await prepare(sp, ctx, state: state, depth: depth) }
            let target = try spec.map { try expandDomain($0, ctx, state: state, explain: false) } ?? ctx.domain
            for name in await validatedNames(ctx.ip, state: state, depth: depth) {
                if name == target || name.hasSuffix("." + target) { return true }
            }
            return false
        case .exists(let spec):
            try count(state, text)
            await prepare(spec, ctx, state: state, depth: depth)
            let target = try expandDomain(spec, ctx, state: state, explain: false)
            state.note("A \(target) (exists)", depth: depth + 1)
            let a = await resolver.query(target, .a)
            if case .tempFail(let why) = a { throw Failure(result: .temperror, problem: "A lookup of \(target): \(why)") }
            try void(state, a, text)
            return !a.records.isEmpty
        }
    }

    func addressMatch(_ name: String, _ ip: IPAddress, v4: Int, v6: Int, state: SPFState, countVoid: Bool, depth: Int, term: String) async throws -> Bool {
        let type: DNSType = ip.isIPv4 ? .a : .aaaa
        state.note("\(type) \(name)", depth: depth + 1)
        let ans = await resolver.query(name, type)
        if case .tempFail(let why) = ans { throw Failure(result: .temperror, problem: "\(type) lookup of \(name): \(why)") }
        if countVoid { try void(state, ans, term) }
        for r in ans.records {
            guard let a = r.address else { continue }
            if IPNetwork(address: a, prefix: a.isIPv4 ? v4 : v6).contains(ip) { return true }
        }
        return false
    }

    /// PTR names of the address that resolve back to it (at most 10 are tried).
    func validatedNames(_ ip: IPAddress, state: SPFState, depth: Int) async -> [String] {
        let rev = DNSResolver.reversedName(ip, zone: ip.isIPv4 ? "in-addr.arpa" : "ip6.arpa")
        state.note("PTR \(rev)", depth: depth + 1)
        let ptr = await resolver.query(rev, .ptr)
        var out: [String] = []
        for case .ptr(let n) in ptr.records.prefix(limits.ptrNames) {
            let ans = await resolver.query(n, ip.isIPv4 ? .a : .aaaa)
            if ans.records.contains(where: { $0.address == ip }) { out.append(n) }
        }
        return out
    }

    /// The expanded `exp=` text, or nil when there is none to be had (RFC 7208 §6.2: any
    /// problem means no explanation, never an error).
    func explanation(_ spec: MacroString, _ ctx: Context, state: SPFState, depth: Int) async -> String? {
        await prepare(spec, ctx, state: state, depth: depth)
        guard let target = try? expandDomain(spec, ctx, state: state, explain: false) else { return nil }
        state.note("exp: TXT \(target)", depth: depth + 1)
        guard case .records(let r) = await resolver.query(target, .txt) else { return nil }
        let texts = r.compactMap { rec -> String? in if case .txt(let t) = rec { return t } else { return nil } }
        guard texts.count == 1, let parsed = try? SPFEvaluator.parseMacroString(texts[0], explain: true) else { return nil }
        await prepare(parsed, ctx, state: state, depth: depth)
        guard let text = try? expand(parsed, ctx, state: state, explain: true) else { return nil }
        let clean = String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7f }.map(Character.init))
        return String(clean.prefix(512))
    }

    // MARK: Macros (RFC 7208 §7)

    /// Asks for the `p` macro's names when the spec uses them (once per evaluation).
    func prepare(_ spec: MacroString, _ ctx: Context, state: SPFState, depth: Int) async {
        guard state.pNames == nil, spec.usesP else { return }
        state.pNames = await validatedNames(ctx.ip, state: state, depth: depth)
    }

    func expandDomain(_ spec: MacroString, _ ctx: Context, state: SPFState, explain: Bool) throws -> String {
        var s = try expand(spec, ctx, state: state, explain: explain)
        while s.hasSuffix(".") { s.removeLast() }
        // §7.3: longer than 253 octets → drop labels from the left.
        while s.utf8.count > 253, let dot = s.firstIndex(of: ".") { s = String(s[s.index(after: dot)...]) }
        return canonicalName(s)
    }

    func expand(_ spec: MacroString, _ ctx: Context, state: SPFState, explain: Bool) throws -> String {
        var out = ""
        for part in spec.parts {
            switch part {
            case .literal(let t): out += t
            case .macro(let letter, let digits, let reverse, let delimiters, let upper):
                var value: String
                switch letter {
                case "s": value = ctx.sender
                case "l": value = SPFEvaluator.localPart(ctx.sender)
                case "o": value = SPFEvaluator.domainPart(ctx.sender)
                case "d": value = ctx.domain
                case "i":
                    if case .v4 = ctx.ip { value = ctx.ip.description } else {
                        let hex = Array("0123456789abcdef")
                        value = ctx.ip.bytes.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 0xf)]] }.map(String.init).joined(separator: ".")
                    }
                case "p":
                    // §7.3: a validated name equal to or under the domain, else any, else "unknown".
                    let names = state.pNames ?? []
                    value = names.first { $0 == ctx.domain || $0.hasSuffix("." + ctx.domain) } ?? names.first ?? "unknown"
                case "v": value = ctx.ip.isIPv4 ? "in-addr" : "ip6"
                case "h": value = ctx.helo
                case "c": value = ctx.ip.description
                case "r": value = receiver
                case "t": value = String(Int(Date().timeIntervalSince1970))
                default: throw Failure(result: .permerror, problem: "unknown macro letter '\(letter)'")
                }
                let delims = delimiters.isEmpty ? ["."] : delimiters
                var parts = value.split(omittingEmptySubsequences: false, whereSeparator: { delims.contains($0) }).map(String.init)
                if reverse { parts.reverse() }
                if let n = digits, n < parts.count { parts = Array(parts.suffix(n)) }
                var joined = parts.joined(separator: ".")
                if upper { joined = joined.addingPercentEncoding(withAllowedCharacters: SPFEvaluator.unreserved) ?? joined }
                out += joined
            }
            if out.utf8.count > limits.maxExpansion { throw Failure(result: .permerror, problem: "macro expansion longer than \(limits.maxExpansion) octets") }
        }
        return out
    }

    /// The parts of `local@domain` around the last "@"; `check` always gives the sender one.
    static func localPart(_ sender: String) -> String {
        sender.lastIndex(of: "@").map { String(sender[..<$0]) } ?? "postmaster"
    }

    static func domainPart(_ sender: String) -> String {
        sender.lastIndex(of: "@").map { String(sender[sender.index(after: $0)...]) } ?? sender
    }

    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    // MARK: Domains

    /// A multi-label name, each label 1 to 63 octets, 253 in all (RFC 7208 §4.3).
    public static func isValidDomain(_ d: String) -> Bool {
        let labels = d.split(separator: ".", omittingEmptySubsequences: false)
        return labels.count >= 2 && d.utf8.count <= 253 && labels.allSatisfy { !$0.isEmpty && $0.utf8.count <= 63 }
    }
}

