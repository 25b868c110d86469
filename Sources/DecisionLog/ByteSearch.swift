import Foundation
import CByteSearch

/// Finding a few octets in a log line without parsing it: the filters' first pass.
public enum ByteSearch {
    /// Whether `needle` (not empty) occurs in `line`.
    public static func contains(_ line: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        needle.isEmpty || range(of: needle, in: line) != nil
    }

    /// Where `needle` (not empty) first occurs in `line` (the slice's own indices), by glibc's
    /// memmem. (Foundation's `firstRange(of:)` on a byte slice is generic and allocates: it
    /// was most of `log report`'s time.)
    public static func range(of needle: [UInt8], in line: ArraySlice<UInt8>) -> Range<Int>? {
        guard !needle.isEmpty else { return nil }
        let found: Int? = line.withUnsafeBytes { l in
            needle.withUnsafeBytes { n in
                guard let base = l.baseAddress, let nb = n.baseAddress, l.count >= n.count,
                      let hit = mailgate_memmem(base, l.count, nb, n.count) else { return nil }
                return base.distance(to: UnsafeRawPointer(hit))
            }
        }
        return found.map { (line.startIndex + $0)..<(line.startIndex + $0 + needle.count) }
    }

    /// The string value of `"key":"…"`, read from the octets (nil when the key is not there or
    /// its value holds an escape: then the line must be parsed).
    public static func stringValue(_ key: [UInt8], in line: ArraySlice<UInt8>) -> String? {
        guard let r = range(of: key, in: line) else { return nil }
        var i = r.upperBound
        while i < line.endIndex {
            switch line[i] {
            case UInt8(ascii: "\""): return String(decoding: line[r.upperBound..<i], as: UTF8.self)
            case UInt8(ascii: "\\"): return nil
            default: i += 1
            }
        }
        return nil
    }

    /// `"key":"` as the log writes it: what `stringValue` looks for.
    public static func key(_ key: String) -> [UInt8] {
        var out: [UInt8] = []
        JSONValue.writeString(key, into: &out)
        out.append(contentsOf: Array(":\"".utf8))
        return out
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
