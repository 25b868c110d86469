import Foundation
import SMTPProtocol

/// Filters for `mailgate log query`. Every given filter must match.
public struct LogFilter: Sendable {
    public var since: String?
    public var until: String?
    public var client: IPNetwork?
    public var session: String?
    public var event: String?
    public var action: String?
    public var stage: String?
    public var check: String?
    public var sender: String?
    public var recipient: String?

    public init() {}

    /// Timestamps compare as text: RFC 3339 UTC strings sort in time order; a bare date
    /// (`2026-11-25`) or a date and time both work as prefixes.
    public func matches(_ r: [String: Any]) -> Bool {
        let ts = r["ts"] as? String ?? ""
        if let s = since, ts < s { return false }
        if let u = until, ts >= u { return false }
        if let c = client {
            guard let ipText = r["client"] as? String, let ip = IPAddress(ipText), c.contains(ip) else { return false }
        }
        if let s = session, (r["session"] as? String) != s { return false }
        if let e = event, (r["event"] as? String) != e { return false }
        if let a = action, (r["action"] as? String) != a { return false }
        if let s = stage, (r["stage"] as? String) != s { return false }
        if let c = check, (r["check"] as? String) != c { return false }
        if let s = sender {
            guard let v = r["sender"] as? String, v.lowercased() == s.lowercased() else { return false }
        }
        if let rc = recipient {
            let list = (r["recipients"] as? [String]) ?? (r["recipient"] as? String).map { [$0] } ?? []
            guard list.contains(where: { $0.lowercased() == rc.lowercased() }) else { return false }
        }
        return true
    }
}
