/// A session's id in the log and in replies: 8 hex digits of the connect time (Unix seconds)
/// and 12 of random bits (48: two sessions in the same second share an id about once in
/// 10^14 pairs). Ids made before this layout are 16 random hex digits; they carry no time,
/// and a search for one reads the whole log.
public enum SessionID {
    public static func make(seconds: UInt32, random: UInt64) -> String {
        hex(UInt64(seconds), 8) + hex(random & 0xFFFF_FFFF_FFFF, 12)
    }

    /// The connect time a session id (or a transaction id, `SESSION.N`) carries, if it has
    /// the layout.
    public static func seconds(of id: some StringProtocol) -> Int? {
        let s = session(of: String(id))
        guard s.count == 20, s.allSatisfy(\.isHexDigit), let v = UInt32(s.prefix(8), radix: 16) else { return nil }
        return Int(v)
    }

    /// The session part of a transaction id (`SESSION.N` → `SESSION`).
    public static func session(of id: String) -> String {
        id.split(separator: ".", maxSplits: 1).first.map(String.init) ?? id
    }

    static func hex(_ v: UInt64, _ digits: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, digits - s.count)) + s
    }
}
