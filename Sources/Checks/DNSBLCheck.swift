import Foundation
import NIOConcurrencyHelpers
import PolicyEngine
import SMTPProtocol
import DNSResolver

/// Whether each DNSBL zone is in service, shared by every policy the gateway compiles so
/// that a reload keeps what the self-tests found.
public final class ZoneHealth: Sendable {
    private let state = NIOLockedValueBox<[String: String]>([:])
    public init() {}
    /// Why the zone is disabled, or nil when it is in service.
    public func disabled(_ zone: String) -> String? { state.withLockedValue { $0[zone] } }
    /// Sets the state; true when it changed.
    @discardableResult
    public func set(_ zone: String, disabledBecause reason: String?) -> Bool {
        state.withLockedValue { s in
            let changed = (s[zone] == nil) != (reason == nil)
            s[zone] = reason
            return changed
        }
    }
}

/// DNS blocklists and allowlists at connect (RFC 5782). Every zone is asked in parallel
/// under one deadline. A zone lists the client when it answers an address in 127.0.0.0/8
/// that its settings count; answers outside 127/8 and 127.255.255.x ("refused / over quota")
/// are errors, never listings. A timeout or SERVFAIL is not a listing either: the check's
/// onError decides (default: pass, logged as temperror).
public struct DNSBLCheck: Check, SelfTesting {
    public struct Zone: Sendable, Equatable {
        public enum Kind: String, Sendable { case block, allow }
        public enum Effect: String, Sendable { case reject, score, none }
        public var zone: String
        public var kind: Kind = .block
        /// Exact answers that count, with a label; empty: any 127.0.0.0/8 answer counts.
        public var answers: [IPAddress: String] = [:]
        /// Bitmask zones: the last octet AND this is not zero.
        public var bitmask: UInt8?
        public var effect: Effect = .reject
        public var score: Double = 0
        public var reply: String = "Service unavailable; client [{ip}] blocked using {zone}{reason}"
        /// Shown in replies instead of the zone (for zones whose name carries a key).
        public var displayName: String?
        public var ipv6 = true
        /// False for a zone that lists IPv6 addresses only (its self-test then uses the
        /// IPv6 test points).
        public var ipv4 = true
        public init(zone: String) { self.zone = canonicalName(zone) }
    }

    public struct Options: Sendable {
        public var zones: [Zone] = []
        /// Seconds for all zones together.
        public var timeout: Double = 5
        /// Clients that skip every zone (and the checks after), from an ip list file.
        public var allow: [IPNetwork] = []
        /// Also check clients in authorizedAddresses.
        public var checkAuthorized = false
        /// Give the refusal at RCPT instead of at connect.
        public var deferToRcpt = false
        public init() {}
    }

    public let name = "dnsbl"
    public let stages: Set<Stage> = [.connect]
    public let options: Options
    let resolver: DNSResolver
    let health: ZoneHealth

    public init(options: Options, resolver: DNSResolver, health: ZoneHealth) {
        self.options = options
        self.resolver = resolver
        self.health = health
    }

    public static let results = ["pass", "listed", "allowed", "skipped", "temperror"]
    public static let facts: [FactDecl] = [
        FactDecl("dnsbl.listed", .keyed(.bool), .connect, "the zone lists the client: dnsbl.listed(\"zen.example\")"),
        FactDecl("dnsbl.zones", .set, .connect, "the zones that list the client"),
        FactDecl("dnsbl.answer", .keyed(.string), .connect, "a zone's answer (127.0.0.x) or its label"),
        FactDecl("dnsbl.txt", .keyed(.string), .connect, "a zone's TXT reason"),
        FactDecl("dnsbl.allowed", .bool, .connect, "an allow list or DNSWL zone lists the client"),
        FactDecl("dnsbl.errors", .set, .connect, "zones that could not be asked (timeout, SERVFAIL, bad answer)"),
    ]

    /// What one zone said about one address.
    public enum Verdict: Sendable, Equatable {
        case listed(label: String, txt: String?)
        case notListed
        case error(String)
        case disabled(String)
    }

    public func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        let ip = context.clientIP
        if context.clientAuthorized && !options.checkAuthorized { return .pass("skipped", reason: "client in authorizedAddresses") }
        if options.allow.contains(where: { $0.contains(ip) }) {
            return CheckResult(.accept, result: "allowed", reason: "client \(ip) is in the DNSBL allow list", facts: ["allowed": .bool(true)])
        }
        let verdicts = await lookup(ip)
        var listed: [String: FactValue] = [:], answers: [String: FactValue] = [:], txts: [String: FactValue] = [:]
        var errors: [String] = []
        var reasons: [String] = []
        var score = 0.0
        var decision: Action = .continue
        var allowedBy: String?
        for (zone, v) in zip(options.zones, verdicts) {
            switch v {
            case .listed(let label, let txt):
                listed[zone.zone] = .bool(true)
                answers[zone.zone] = .string(label)
                if let t = txt { txts[zone.zone] = .string(t) }
                reasons.append("\(zone.zone) lists \(ip) (\(label))\(txt.map { ": \($0)" } ?? "")")
                if zone.kind == .allow { allowedBy = allowedBy ?? zone.zone; continue }
                switch zone.effect {
                case .reject:
                    if case .continue = decision { decision = .reject(reply(zone, ip: ip, txt: txt)) }
                case .score: score += zone.score
                case .none: break
                }
            case .notListed: break
            case .error(let why):
                errors.append(zone.zone)
                reasons.append("\(zone.zone): \(why)")
            case .disabled(let why):
                reasons.append("\(zone.zone) skipped: disabled (\(why))")
            }
        }
        let facts: [String: FactValue] = ["listed": .keyed(listed), "zones": .strings(Array(listed.keys.filter { z in options.zones.first { $0.zone == z }?.kind == .block })),
                                          "answer": .keyed(answers), "txt": .keyed(txts), "allowed": .bool(allowedBy != nil),
                                          "errors": .strings(errors)]
        let reason = reasons.isEmpty ? "no zone lists \(ip)" : reasons.joined(separator: "; ")
        if let a = allowedBy {
            return CheckResult(.accept, result: "allowed", reason: "\(a) allow-lists \(ip); " + reason, facts: facts)
        }
        if decision.reply != nil || score != 0 || !listed.isEmpty {
            return CheckResult(decision, result: "listed", reason: reason, score: score, facts: facts,
                               deferTo: options.deferToRcpt ? .rcpt : nil)
        }
        if !errors.isEmpty {
            var r = CheckResult.failure(reason, result: "temperror")
            r.facts = facts
            return r
        }
        return CheckResult(.continue, result: "pass", reason: reason, facts: facts)
    }

    func reply(_ z: Zone, ip: IPAddress, txt: String?) -> SMTPReply {
        let shown = z.displayName ?? z.zone
        let text = z.reply.replacingOccurrences(of: "{ip}", with: ip.description)
            .replacingOccurrences(of: "{zone}", with: shown)
            .replacingOccurrences(of: "{reason}", with: txt.map { "; " + String($0.prefix(200)) } ?? "")
        return SMTPReply(554, "5.7.1", text)
    }

    /// Asks every zone in parallel, under one deadline.
    public func lookup(_ ip: IPAddress) async -> [Verdict] {
        let zones = options.zones
        let deadline = options.timeout
        return await withTaskGroup(of: (Int, Verdict).self) { g in
            for (i, z) in zones.enumerated() {
                g.addTask {
                    if let why = health.disabled(z.zone) { return (i, .disabled(why)) }
                    if !ip.isIPv4 && !z.ipv6 { return (i, .notListed) }
                    if ip.isIPv4 && !z.ipv4 { return (i, .notListed) }
                    return (i, await query(z, ip))
                }
            }
            g.addTask {
                try? await Task.sleep(for: .milliseconds(Int(deadline * 1000)))
                return (-1, .error("deadline"))
            }
            var out = [Verdict?](repeating: nil, count: zones.count)
            var left = zones.count
            while left > 0, let (i, v) = await g.next() {
                if i < 0 { break }
                out[i] = v
                left -= 1
            }
            g.cancelAll()
            return out.map { $0 ?? .error("no answer within \(FactValue.format(deadline))s") }
        }
    }

    /// One zone's verdict on one address.
    public func query(_ z: Zone, _ ip: IPAddress) async -> Verdict {
        let name = DNSResolver.reversedName(ip, zone: z.zone)
        switch await resolver.query(name, .a) {
        case .nxdomain, .noData: return .notListed
        case .tempFail(let why): return .error(why)
        case .records(let recs):
            var label: String?
            for case .a(let a) in recs {
                guard case .v4(let v) = a, v >> 24 == 127 else { return .error("answer \(a) is outside 127.0.0.0/8") }
                if v >> 8 == 0x7fffff { return .error("answer \(a): query refused or over quota") }
                if !z.answers.isEmpty {
                    if let l = z.answers[a] { label = label ?? l }
                } else if let mask = z.bitmask {
                    if UInt8(v & 0xff) & mask != 0 { label = label ?? a.description }
                } else {
                    label = label ?? a.description
                }
            }
            guard let l = label else { return .notListed }
            var txt: String?
            if case .records(let t) = await resolver.query(name, .txt), case .txt(let s)? = t.first { txt = s }
            return .listed(label: l, txt: txt)
        }
    }

    /// RFC 5782 §5 test points: 127.0.0.2 must be listed, 127.0.0.1 must not (for a zone
    /// that lists IPv6 only, ::FFFF:7F00:2 and ::FFFF:7F00:1). A zone that fails is disabled
    /// until it answers correctly again; a zone that cannot be asked keeps its state.
    public func selfTest() async -> [SelfTestReport] {
        var out: [SelfTestReport] = []
        for z in options.zones where z.kind == .block {
            let v6 = !z.ipv4 && z.ipv6
            let listedPoint: IPAddress = v6 ? .v6(0, 0xffff_7f00_0002) : .v4(0x7f00_0002)
            let clearPoint: IPAddress = v6 ? .v6(0, 0xffff_7f00_0001) : .v4(0x7f00_0001)
            let two = await query(z, listedPoint)
            let one = await query(z, clearPoint)
            var problem: String?
            switch (two, one) {
            case (.error(let e), _) where e.contains("over quota") || e.contains("outside"): problem = "test point \(listedPoint): \(e)"
            case (_, .error(let e)) where e.contains("over quota") || e.contains("outside"): problem = "test point \(clearPoint): \(e)"
            case (.error, _), (_, .error): continue
            case (_, .listed): problem = "lists the test point \(clearPoint) (it would list everyone)"
            case (.notListed, _): problem = "does not list the test point \(listedPoint)"
            default: problem = nil
            }
            if health.set(z.zone, disabledBecause: problem) {
                out.append(SelfTestReport(check: name, subject: z.zone, state: problem == nil ? "enabled" : "disabled",
                                          reason: problem ?? "answers its test points correctly again"))
            }
        }
        return out
    }
}
