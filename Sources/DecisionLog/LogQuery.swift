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

extension LogFilter {
    /// Octets a matching line must hold (exact-match fields; a single client address):
    /// lines without them are skipped without being parsed.
    var needles: [[UInt8]] {
        var n: [[UInt8]] = []
        for (k, v) in [("session", session)] {
            if let v { n.append(ByteSearch.field(k, v)) }
        }
        if let c = client, c.prefix == (c.address.isIPv4 ? 32 : 128) {
            n.append(ByteSearch.field("client", c.address.description))
        } else if let c = client, c.address.isIPv4, c.prefix >= 8 {
            // An IPv4 network: the octets its whole bytes fix (`"client":"198.51.100.` for a /24).
            let whole = c.address.description.split(separator: ".").prefix(c.prefix / 8).joined(separator: ".")
            n.append(Array("\"client\":\"\(whole).".utf8))
        }
        return n
    }

    /// The sender and recipient as a matching line holds them in some case, lower-cased: the
    /// sender as its field (`"sender":"a@b"`), or on a line that carries folds also as a
    /// folded entry's subject (`"a@b"`); a recipient as a quoted string (its field, the
    /// `recipients` list, a subject). Only for printable ASCII without `"` or `\\`, which
    /// JSON writes as they are.
    func caseFoldedNeedles(folded: Bool) -> [[UInt8]] {
        func plain(_ v: String?) -> String? {
            guard let v, v.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != 0x22 && $0 != 0x5c }) else { return nil }
            return v.lowercased()
        }
        var n: [[UInt8]] = []
        if let s = plain(sender) { n.append(Array((folded ? "\"\(s)\"" : "\"sender\":\"\(s)\"").utf8)) }
        if let r = plain(recipient) { n.append(Array("\"\(r)\"".utf8)) }
        return n
    }

    /// Octets a matching line must hold when it carries no folded verdicts.
    var recordNeedles: [[UInt8]] {
        [("event", event), ("action", action), ("stage", stage), ("check", check)].compactMap { k, v in v.map { ByteSearch.field(k, $0) } }
    }

    /// Octets a matching line that carries folded verdicts must hold. Those entries are
    /// verdicts that continued, written `["stage","check"…` (a rule's check `"policy/RULE"`):
    /// another event or action must be the carrier's own field, and a stage or check is
    /// there as a quoted string either way.
    var foldedNeedles: [[UInt8]] {
        var n: [[UInt8]] = []
        if let e = event, e != "verdict" { n.append(ByteSearch.field("event", e)) }
        if let a = action, a != "continue" { n.append(ByteSearch.field("action", a)) }
        if let s = stage {
            var q: [UInt8] = []
            JSONValue.writeString(s, into: &q)
            n.append(q)
        }
        if let c = check {
            var q: [UInt8] = []
            JSONValue.writeString(c, into: &q)
            n.append(Array(q.dropLast()))
        }
        return n
    }

    /// What gives the matching records a line holds (its folded verdicts among them):
    /// lines without the octets every match must hold are not parsed.
    public func matcher() -> (ArraySlice<UInt8>) -> [[String: Any]] {
        let n = Needles(self)
        return { self.match($0, n) }
    }

    /// Every prefilter's octets, made once per scan, and the scan's scratch buffer.
    final class Needles {
        let exact: [[UInt8]], record: [[UInt8]], folded: [[UInt8]], caseFoldedRecord: [[UInt8]], caseFoldedFolded: [[UInt8]]
        var scratch: [UInt8] = []
        init(_ f: LogFilter) {
            exact = f.needles
            record = f.recordNeedles
            folded = f.foldedNeedles
            caseFoldedRecord = f.caseFoldedNeedles(folded: false)
            caseFoldedFolded = f.caseFoldedNeedles(folded: true)
        }
    }

    func match(_ line: ArraySlice<UInt8>, _ n: Needles) -> [[String: Any]] {
        guard n.exact.allSatisfy({ ByteSearch.contains(line, $0) }) else { return [] }
        let folds = ByteSearch.contains(line, FoldedChecks.marker)
        guard (folds ? n.folded : n.record).allSatisfy({ ByteSearch.contains(line, $0) }),
              (folds ? n.caseFoldedFolded : n.caseFoldedRecord).allSatisfy({ ByteSearch.mayContainIgnoringCase(line, $0, scratch: &n.scratch) })
        else { return [] }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return [] }
        return FoldedChecks.expand(obj).filter(matches)
    }

    /// Every matching record of the log at `path` and the files rotated from it, oldest
    /// first. With `since`, each file is entered by a binary search on time; with `until`,
    /// reading stops past it (records are written in time order).
    /// `skip`: lines the caller does not need, told by their octets (not parsed).
    /// A line's folded verdicts are records of their own here: each match is given with its
    /// line, so one line can come more than once.
    public func scan(path: String, skip: ((ArraySlice<UInt8>) -> Bool)? = nil, _ body: ([String: Any], Substring) -> Void) throws {
        let n = Needles(self)
        let untilStamp = until.map { Array($0.utf8.prefix(19)) }
        var past = false
        for file in LogFileSet.rotated(of: path) + [path] where !past {
            let from = try since.map { try SessionSearch.start(path: file, before: $0) } ?? 0
            try LogReader.scanLines(path: file, from: from) { line, _ in
                if let u = untilStamp, let ts = SessionSearch.stamp(of: line), u.lexicographicallyPrecedes(ts) {
                    past = true
                    return false
                }
                if let skip, skip(line) { return true }
                let found = match(line, n)
                if !found.isEmpty {
                    let text = Substring(decoding: line, as: UTF8.self)
                    for r in found { body(r, text) }
                }
                return true
            }
        }
    }
}
