/// A session's id in the log and in replies: 8 hex digits of the connect time (Unix seconds)
/// and 8 of random bits. Ids made before this layout are random throughout; `seconds`
/// then gives a wrong time, and a search falls back to reading the whole log.
public enum SessionID {
    public static func make(seconds: UInt32, random: UInt32) -> String {
        hex8(seconds) + hex8(random)
    }

    /// The connect time a session id (or a transaction id, `SESSION.N`) carries, if it has
    /// the layout.
    public static func seconds(of id: some StringProtocol) -> Int? {
        let s = id.prefix(16)
        guard s.count == 16, s.allSatisfy(\.isHexDigit), let v = UInt32(s.prefix(8), radix: 16) else { return nil }
        return Int(v)
    }

    /// The session part of a transaction id (`SESSION.N` → `SESSION`).
    public static func session(of id: String) -> String {
        id.split(separator: ".", maxSplits: 1).first.map(String.init) ?? id
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}
