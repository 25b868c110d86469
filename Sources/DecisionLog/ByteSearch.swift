import Foundation

/// Finding a few octets in a log line without parsing it: the filters' first pass.
public enum ByteSearch {
    /// Whether `needle` (not empty) occurs in `line`: memchr for its first octet, then a compare.
    public static func contains(_ line: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        guard let first = needle.first else { return true }
        return line.withUnsafeBytes { l in
            needle.withUnsafeBytes { n in
                guard let base = l.baseAddress, let nb = n.baseAddress, l.count >= n.count else { return false }
                var at = 0
                while at + n.count <= l.count, let hit = memchr(base + at, Int32(first), l.count - n.count + 1 - at) {
                    let i = base.distance(to: UnsafeRawPointer(hit))
                    if memcmp(base + i, nb, n.count) == 0 { return true }
                    at = i + 1
                }
                return false
            }
        }
    }

    /// `"key":"value"` as the log writes it (the value JSON-escaped): a line without these
    /// octets cannot have that field equal to that value.
    public static func field(_ key: String, _ value: String) -> [UInt8] {
        var out: [UInt8] = []
        JSONValue.writeString(key, into: &out)
        out.append(UInt8(ascii: ":"))
        JSONValue.writeString(value, into: &out)
        return out
    }
}
