import Foundation

/// A check's verdict that did not act (it let the session go on: no reply, no score, no
/// header, not monitored, deferred or overridden; never the gateway's own decisions, such as
/// relaying allowed or AUTH) is not a record of its own: it is folded
/// into the session's next record as one entry of its `checks` array,
/// `[stage, check, result, duration_ms, reason, subject]` (reason "" when none; subject the
/// HELO name at HELO, the sender at MAIL, the recipient at RCPT, else absent; check
/// `policy/RULE` for a rule's),
/// so a clean message takes a few records instead of one per check. Readers see such
/// entries as the verdict records they stand for (`expand`): same stage, check, result and
/// reason, action `continue`, with the carrying record's time, session and client.
public enum FoldedChecks {
    /// The entry for a verdict that did not act.
    public static func entry(stage: String, check: String, rule: String?, result: String, durationMs: Double?, reason: String?, subject: String?) -> JSONValue {
        var a: [JSONValue] = [.string(stage), .string(rule.map { "\(check)/\($0)" } ?? check), .string(result),
                              .double(durationMs.map { ($0 * 1000).rounded() / 1000 } ?? 0), .string(reason ?? "")]
        if let s = subject { a.append(.string(s)) }
        return .array(a)
    }

    /// The octets that say a line carries folded checks.
    public static let marker = Array("\"checks\":[[".utf8)

    /// The verdict records a record's `checks` stand for, then the record itself; a record
    /// without them, alone.
    public static func expand(_ r: [String: Any]) -> [[String: Any]] {
        guard let list = r["checks"] as? [Any], !list.isEmpty else { return [r] }
        var out: [[String: Any]] = []
        out.reserveCapacity(list.count + 1)
        for case let e as [Any] in list {
            guard e.count >= 5, let stage = e[0] as? String, let check = e[1] as? String, let result = e[2] as? String else { continue }
            var v: [String: Any] = ["event": "verdict", "stage": stage, "result": result, "action": "continue", "folded": true]
            for k in ["seq", "ts", "session", "client", "policy", "policy_version"] { if let x = r[k] { v[k] = x } }
            if let slash = check.firstIndex(of: "/") {
                v["check"] = String(check[..<slash])
                v["rule"] = String(check[check.index(after: slash)...])
            } else {
                v["check"] = check
            }
            if let ms = e[3] as? Double { v["duration_ms"] = ms } else if let ms = e[3] as? Int { v["duration_ms"] = Double(ms) }
            if let reason = e[4] as? String, !reason.isEmpty { v["reason"] = reason }
            if e.count > 5, let subject = e[5] as? String {
                switch stage {
                case "helo": v["helo"] = subject
                case "mail": v["sender"] = subject
                case "rcpt": v["recipient"] = subject
                default: break
                }
            }
            out.append(v)
        }
        var carrier = r
        carrier["checks"] = nil
        out.append(carrier)
        return out
    }
}
