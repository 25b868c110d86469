/// The RCPT parameters of RFC 3461 (delivery status notifications), kept as the client
/// gave them (validated, NOTIFY in upper case) to be passed on to a downstream that offers DSN.
public struct RecipientParameters: Hashable, Sendable {
    /// `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY`.
    public var notify: String?
    /// `addr-type;xtext`, e.g. `rfc822;bob@example.org`.
    public var orcpt: String?
    public init() {}
    public var isEmpty: Bool { notify == nil && orcpt == nil }

    /// As they go on the wire after `RCPT TO:<…>`.
    public var wire: String { (notify.map { " NOTIFY=\($0)" } ?? "") + (orcpt.map { " ORCPT=\($0)" } ?? "") }
}

/// Syntax of the DSN parameters (RFC 3461 §4).
public enum DSNSyntax {
    /// The normalised NOTIFY value, or nil when it is not valid (NEVER alone, or a set of
    /// SUCCESS, FAILURE and DELAY without repeats).
    public static func notify(_ v: Substring) -> String? {
        let words = v.uppercased().split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        if words == ["NEVER"] { return "NEVER" }
        let allowed: Set = ["SUCCESS", "FAILURE", "DELAY"]
        guard !words.isEmpty, words.allSatisfy({ allowed.contains($0) }), Set(words).count == words.count else { return nil }
        return words.joined(separator: ",")
    }

    /// xtext (RFC 3461 §4): printable ASCII except `+` and `=`, and `+XX` in upper-case hex.
    public static func isXtext<C: Collection>(_ v: C, maxOctets: Int) -> Bool where C.Element == UInt8 {
        guard !v.isEmpty, v.count <= maxOctets else { return false }
        var i = v.startIndex
        while i < v.endIndex {
            let c = v[i]
            if c == UInt8(ascii: "+") {
                for _ in 0..<2 {
                    i = v.index(after: i)
                    guard i < v.endIndex, (0x30...0x39).contains(v[i]) || (0x41...0x46).contains(v[i]) else { return false }
                }
            } else if c < 0x21 || c > 0x7E || c == UInt8(ascii: "=") {
                return false
            }
            i = v.index(after: i)
        }
        return true
    }

    /// ORCPT: an atom address type, `;`, then xtext (500 octets in all at most).
    public static func isORCPT(_ v: Substring) -> Bool {
        let u = Array(v.utf8)
        guard u.count <= 500, let semi = u.firstIndex(of: UInt8(ascii: ";")), semi > 0 else { return false }
        let type = u[..<semi]
        guard type.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == UInt8(ascii: "-") }) else { return false }
        return isXtext(u[(semi + 1)...], maxOctets: 500)
    }
}
