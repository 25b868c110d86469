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
        if let f = raw.withContiguousStorageIfAvailable({ parse(bytes: $0) }) { return f }
        return Array(raw).withUnsafeBufferPointer { parse(bytes: $0) }
    }

    /// One pass over the octets: the name up to the colon, then each line of the value
    /// without its blanks at either end, the non-empty ones joined by one space.
    static func parse(bytes b: UnsafeBufferPointer<UInt8>) -> HeaderField? {
        guard let colon = b.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let name = trimmed(b[b.startIndex..<colon])
        var value: [UInt8] = []
        value.reserveCapacity(b.count - colon)
        var start = colon + 1
        while start <= b.count {
            var end = start
            while end < b.count && b[end] != 10 { end += 1 }
            var lo = start, hi = end
            while lo < hi && isBlank(b[lo]) { lo += 1 }
            while hi > lo && isBlank(b[hi - 1]) { hi -= 1 }
            if lo < hi {
                if !value.isEmpty { value.append(32) }
                value.append(contentsOf: b[lo..<hi])
            }
            start = end + 1
        }
        return HeaderField(name, String(decoding: value, as: UTF8.self))
    }

    private static func isBlank(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 13 }

    static func trimmed<C: Collection>(_ b: C) -> String where C.Element == UInt8 {
        let a = Array(b)
        guard let first = a.firstIndex(where: { !isBlank($0) }), let last = a.lastIndex(where: { !isBlank($0) }) else { return "" }
        return String(decoding: a[first...last], as: UTF8.self)
    }
}
