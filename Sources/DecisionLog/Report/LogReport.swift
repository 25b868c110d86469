import Foundation
import SMTPProtocol

/// What `mailgate log report` counts: messages accepted, and every refusal and deferral the
/// gateway answered (a policy or gateway verdict with a reply, a connection refused, a
/// message the downstream refused), by stage, check, rule, reply code and time, with the
/// clients, HELO names, senders and recipients most refused, and the policies in force.
public struct LogReport: Sendable {
    public enum Bucket: String, Sendable, CaseIterable { case hour, day }

    public struct Counts: Equatable, Sendable {
        public var accepted = 0, refused = 0, deferred = 0
        public var total: Int { accepted + refused + deferred }
    }

    public let bucket: Bucket
    public private(set) var totals = Counts()
    public private(set) var sessions = 0
    public private(set) var records = 0
    /// `stage/check` or `stage/check/rule` → refusals and deferrals.
    public private(set) var reasons: [String: Counts] = [:]
    /// `550 5.7.1` → how many replies.
    public private(set) var replyCodes: [String: Int] = [:]
    /// Bucket start (`2026-11-25T10` or `2026-11-25`) → counts.
    public private(set) var series: [String: Counts] = [:]
    public private(set) var clientNetworks = TopCounter()
    public private(set) var heloNames = TopCounter()
    public private(set) var senderDomains = TopCounter()
    public private(set) var recipients = TopCounter()
    /// `name version` → sessions that ran it.
    public private(set) var policies: [String: Int] = [:]
    public private(set) var firstTime: String?
    public private(set) var lastTime: String?
    /// Open sessions' HELO names, to name the HELO of a later refusal (bounded).
    private var helo: [String: String] = [:]

    public init(bucket: Bucket = .day) { self.bucket = bucket }

    /// Lines a report can skip without parsing: a check that let the session go on, at a
    /// stage other than HELO (which names the session's HELO).
    /// A line that carries folded verdicts is always read (they may name the HELO).
    static func canSkip(_ line: ArraySlice<UInt8>) -> Bool {
        ByteSearch.contains(line, continueAction) && !ByteSearch.contains(line, heloStage) && !ByteSearch.contains(line, FoldedChecks.marker)
    }

    static let continueAction = ByteSearch.field("action", "continue")
    static let heloStage = ByteSearch.field("stage", "helo")

    /// Takes what the report needs from a line without parsing it, where it can: a check
    /// that let the session go on (`canSkip`), a session's open (its policy) or close, a
    /// commit (its transaction record follows). False: the line must be parsed and `add`ed.
    public mutating func addWithoutParsing(_ line: ArraySlice<UInt8>) -> Bool {
        if Self.canSkip(line) || ByteSearch.contains(line, Self.commitEvent) {
            records += 1
            noteTime(line)
            return true
        }
        if ByteSearch.contains(line, Self.openEvent), !ByteSearch.contains(line, FoldedChecks.marker),
           let p = ByteSearch.stringValue(Self.policyKey, in: line), let v = ByteSearch.stringValue(Self.versionKey, in: line) {
            records += 1
            sessions += 1
            policies["\(p) \(v)", default: 0] += 1
            noteTime(line)
            return true
        }
        if ByteSearch.contains(line, Self.closeEvent), let s = ByteSearch.stringValue(Self.sessionKey, in: line) {
            // Verdicts folded into a close did not act, and the session's HELO no longer matters.
            records += 1
            helo[s] = nil
            noteTime(line)
            return true
        }
        return false
    }

    private mutating func noteTime(_ line: ArraySlice<UInt8>) {
        guard let ts = ByteSearch.stringValue(Self.tsKey, in: line.prefix(64)) else { return }
        if firstTime == nil { firstTime = ts }
        lastTime = ts
    }

    static let commitEvent = ByteSearch.field("event", "transaction.commit")
    static let openEvent = ByteSearch.field("event", "session.open")
    static let closeEvent = ByteSearch.field("event", "session.close")
    static let policyKey = ByteSearch.key("policy"), versionKey = ByteSearch.key("policy_version")
    static let sessionKey = ByteSearch.key("session"), tsKey = ByteSearch.key("ts")

    /// A record as read: its folded verdicts are counted as the verdicts they are (a
    /// verdict already expanded from its line is not counted as a record).
    public mutating func add(_ r: [String: Any]) {
        if r["folded"] == nil { records += 1 }
        for e in FoldedChecks.expand(r) { addOne(e) }
    }

    private mutating func addOne(_ r: [String: Any]) {
        let ts = r["ts"] as? String ?? ""
        if firstTime == nil { firstTime = ts }
        lastTime = ts
        let session = r["session"] as? String ?? ""
        switch r["event"] as? String {
        case "session.open":
            sessions += 1
            if let p = r["policy"] as? String { policies["\(p) \(r["policy_version"] as? String ?? "")", default: 0] += 1 }
        case "session.close":
            helo[session] = nil
        case "session.refused":
            count(r, ts: ts, reason: "connect/\(r["check"] as? String ?? "?")")
        case "verdict":
            verdict(r, ts: ts, session: session)
        case "transaction":
            transaction(r, ts: ts)
        default:
            break
        }
    }

    private mutating func verdict(_ r: [String: Any], ts: String, session: String) {
        let stage = r["stage"] as? String ?? "?"
        if stage == "helo", let h = r["helo"] as? String {
            if helo.count >= 100_000 { helo.removeAll() }
            helo[session] = h
        }
        // A refusal is counted where its reply was given, not where it was deferred from.
        guard r["reply"] != nil, r["deferred_to"] == nil, r["monitor"] as? Bool != true else { return }
        var reason = "\(stage)/\(r["check"] as? String ?? "?")"
        if let rule = r["rule"] as? String { reason += "/\(rule)" }
        count(r, ts: ts, reason: reason, helo: helo[session])
    }

    private mutating func transaction(_ r: [String: Any], ts: String) {
        // The session's HELO, for a refusal in a later transaction (its HELO verdicts rode
        // on an earlier record, which the report need not parse).
        if let s = r["session"] as? String, let h = r["helo"] as? String, !h.isEmpty {
            if helo.count >= 100_000 { helo.removeAll() }
            helo[s] = h
        }
        let action = r["action"] as? String ?? ""
        if action == "accept" {
            totals.accepted += 1
            series[key(ts), default: Counts()].accepted += 1
        } else if let d = r["downstream"] as? [String: Any], d["result"] as? String != "delivered" {
            // The downstream refused it (a policy's own refusal has its verdict).
            count(r, ts: ts, reason: "data/downstream")
        }
    }

    private mutating func count(_ r: [String: Any], ts: String, reason: String, helo: String? = nil) {
        let action = r["action"] as? String ?? ""
        let reply = r["reply"] as? String ?? ""
        let deferred = action == "tempfail" || reply.hasPrefix("4")
        guard deferred || action == "reject" || action == "drop" || reply.hasPrefix("5") else { return }
        func bump(_ c: inout Counts) { if deferred { c.deferred += 1 } else { c.refused += 1 } }
        bump(&totals)
        bump(&reasons[reason, default: Counts()])
        bump(&series[key(ts), default: Counts()])
        let code = reply.split(separator: " ").prefix(2).joined(separator: " ")
        if !code.isEmpty { replyCodes[code, default: 0] += 1 }
        if let c = r["client"] as? String { clientNetworks.add(Self.network(c)) }
        if let h = helo ?? r["helo"] as? String { heloNames.add(h.lowercased()) }
        if let s = r["sender"] as? String, let at = s.lastIndex(of: "@") { senderDomains.add(s[s.index(after: at)...].lowercased()) }
        if let rc = r["recipient"] as? String { recipients.add(rc.lowercased()) }
    }

    /// The bucket a time stamp falls in: its first 13 (hour) or 10 (day) characters.
    func key(_ ts: String) -> String { String(ts.prefix(bucket == .hour ? 13 : 10)) }

    /// A client's network as a report groups it: the /24 of an IPv4 address, the /48 of an IPv6 one.
    static func network(_ ip: String) -> String {
        switch IPAddress(ip) {
        case .v4(let a)?: return IPNetwork(address: .v4(a & 0xFFFF_FF00), prefix: 24).description
        case .v6(let hi, _)?: return IPNetwork(address: .v6(hi & 0xFFFF_FFFF_FFFF_0000, 0), prefix: 48).description
        case nil: return ip
        }
    }

    /// Every time bucket from the first to the last, oldest first (empty ones included).
    public var timeline: [(String, Counts)] { series.keys.sorted().map { ($0, series[$0] ?? Counts()) } }
}

/// Counts of keys, for top-N tables. Past `limit` distinct keys the half with the lowest
/// counts is dropped (rare keys' counts become approximate; the top stays right), at most
/// once every `limit / 2` new keys.
public struct TopCounter: Sendable {
    public private(set) var counts: [String: Int] = [:]
    let limit = 100_000

    mutating func add(_ key: String) {
        counts[key, default: 0] += 1
        guard counts.count > limit else { return }
        let keep = counts.sorted { $0.value > $1.value }.prefix(limit / 2)
        counts = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
    }

    public func top(_ n: Int) -> [(String, Int)] {
        counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(n).map { ($0.key, $0.value) }
    }
}
