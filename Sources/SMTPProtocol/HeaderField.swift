/// A header field a check asks to add to the forwarded message.
public struct HeaderField: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

extension HeaderField {
    /// Name and unfolded value of one whole field (RFC 5322 §2.2: its lines joined by CRLF,
    /// each line trimmed, joined by one space); nil without a colon.
    public static func parse<C: Collection>(_ raw: C) -> HeaderField? where C.Element == UInt8 {
        guard let colon = raw.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let name = trimmed(raw[raw.startIndex..<colon])
        let rest = raw[raw.index(after: colon)...]
        let value = rest.split(separator: 10, omittingEmptySubsequences: false).map { trimmed($0) }.filter { !$0.isEmpty }
        return HeaderField(name, value.joined(separator: " "))
    }

    static func trimmed<C: Collection>(_ b: C) -> String where C.Element == UInt8 {
        func blank(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 13 }
        let a = Array(b)
        guard let first = a.firstIndex(where: { !blank($0) }), let last = a.lastIndex(where: { !blank($0) }) else { return "" }
        return String(decoding: a[first...last], as: UTF8.self)
    }
}
