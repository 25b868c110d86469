import Foundation

/// One session's records told as a story a help-desk person can read: who connected, each
/// stage's checks and what they found, the rules that acted, each message and the
/// downstream's answer, how it ended, and in one line at the end what happened.
public enum LogStory {
    public static func tell(_ records: [[String: Any]], id: String) -> [String] {
        guard let first = records.first else { return ["no session \(id) in the log"] }
        var out = [header(first, id: id)]
        var outcome: [String] = []
        for r in records {
            out += lines(r)
            if let o = outcomeLine(r) { outcome.append(o) }
        }
        if records.last.map(event) != "session.close" && records.last.map(event) != "session.refused" {
            out.append("  (no close record: the session was still open, or the gateway stopped or crashed during it)")
        }
        out.append("In short: " + (outcome.isEmpty ? "nothing was refused or accepted" : outcome.joined(separator: "; ")))
        return out
    }

    static func event(_ r: [String: Any]) -> String { r["event"] as? String ?? "?" }
    static func s(_ r: [String: Any], _ k: String) -> String? { r[k].map { "\($0)" } }

    static func header(_ r: [String: Any], id: String) -> String {
        var h = "Session \(s(r, "session") ?? id) from \(s(r, "client") ?? "?")"
        if let p = s(r, "port") { h += " port \(p)" }
        if let l = s(r, "listener") { h += ", listener \(l)" }
        if let p = s(r, "policy") { h += ", policy \(p) \(s(r, "policy_version") ?? "")" }
        if id.contains(".") { h += " (you asked for its transaction \(id))" }
        return h
    }

    /// The time of day with milliseconds, and the date on the session's first line.
    static func time(_ r: [String: Any]) -> String {
        let ts = s(r, "ts") ?? ""
        guard ts.count >= 23 else { return ts }
        return String(ts.dropFirst(11).prefix(12))
    }

    static func lines(_ r: [String: Any]) -> [String] {
        let t = "  \(time(r))  "
        switch event(r) {
        case "session.open":
            return ["\(s(r, "ts") ?? "")  connected to \(s(r, "local") ?? "?") (\(s(r, "protocol") ?? "smtp"))"]
        case "session.refused":
            return [t + "REFUSED before the greeting by \(s(r, "check") ?? "?"): \(s(r, "reply") ?? "") (\(s(r, "reason") ?? ""))"]
        case "verdict":
            return [t + verdict(r)]
        case "transaction":
            return transaction(r, t)
        case "session.close":
            var c = "closed: \(s(r, "reason") ?? "?"), \(s(r, "transactions") ?? "0") transaction(s), \(s(r, "duration_ms") ?? "?") ms"
            if let d = s(r, "detail") { c += " (\(d))" }
            return [t + c]
        default:
            let skip: Set = ["seq", "ts", "prev", "event", "session", "client"]
            let rest = r.keys.filter { !skip.contains($0) }.sorted().map { "\($0)=\(r[$0].map { "\($0)" } ?? "")" }
            return [t + ([event(r)] + rest).joined(separator: " ")]
        }
    }

    static func verdict(_ r: [String: Any]) -> String {
        let action = s(r, "action") ?? "?"
        var v = "\(pad(s(r, "stage") ?? "?", 8)) \(pad(s(r, "check") ?? "?", 10)) \(pad(s(r, "result") ?? "?", 12)) "
        v += action == "continue" ? "ok" : action.uppercased()
        if let rc = s(r, "recipient"), s(r, "stage") == "rcpt" { v += "  for <\(rc)>" }
        if let reply = s(r, "reply") { v += "  \(reply)" }
        if let reason = s(r, "reason") { v += "  because \(reason)" }
        if let rule = s(r, "rule") { v += "  [rule \(rule)\(s(r, "rule_file").map { " at \($0)" } ?? "")]" }
        if r["monitor"] as? Bool == true { v += "  (monitor only: would \(s(r, "would") ?? "?"))" }
        if let d = s(r, "deferred_to") { v += "  (deferred to \(d))" }
        if let o = s(r, "overridden_by") { v += "  (overridden by \(o))" }
        return v
    }

    static func transaction(_ r: [String: Any], _ t: String) -> [String] {
        let rcpts = (r["recipients"] as? [String])?.map { "<\($0)>" }.joined(separator: ", ") ?? ""
        var out = [t + "message \(s(r, "transaction") ?? "") from <\(s(r, "sender") ?? "")> to \(rcpts), \(s(r, "size") ?? "0") octets: \(word(s(r, "action") ?? "?").uppercased()) \(s(r, "reply") ?? "")"]
        if let m = s(r, "message_id"), !m.isEmpty { out.append("      Message-ID \(m)") }
        if let d = r["downstream"] as? [String: Any] {
            out.append("      downstream \(s(d, "target") ?? "?"): \(s(d, "result") ?? "?"), said \(s(d, "reply") ?? "")")
        }
        return out
    }

    static func outcomeLine(_ r: [String: Any]) -> String? {
        let action = s(r, "action") ?? ""
        switch event(r) {
        case "transaction":
            return "message \(s(r, "transaction") ?? "") \(word(action)) (\(s(r, "reply") ?? ""))"
        case "verdict", "session.refused":
            guard action == "reject" || action == "tempfail" else { return nil }
            let why = [s(r, "reply"), s(r, "reason").map { "because \($0)" }].compactMap { $0 }.joined(separator: ", ")
            return "\(word(action)) at \(s(r, "stage") ?? "connect") by \(s(r, "check") ?? "?")\(s(r, "rule").map { " (rule \($0))" } ?? ""): \(why)"
        default:
            return nil
        }
    }

    /// What an action did to the mail, in plain words.
    static func word(_ action: String) -> String {
        ["accept": "accepted", "reject": "refused", "tempfail": "deferred"][action] ?? action
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
}
