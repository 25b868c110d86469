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

    /// Whether `needle` (lower-case ASCII) occurs in `line` ignoring ASCII case, as a prefilter
    /// for a comparison of lower-cased text: a line with any non-ASCII octet passes (its
    /// Unicode lower-casing cannot be judged from the octets).
    public static func mayContainIgnoringCase(_ line: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        var scratch: [UInt8] = []
        return mayContainIgnoringCase(line, needle, scratch: &scratch)
    }

    /// The same, lower-casing into `scratch` (kept between calls: no allocation per line).
    public static func mayContainIgnoringCase(_ line: ArraySlice<UInt8>, _ needle: [UInt8], scratch: inout [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        if range(of: needle, in: line) != nil { return true }
        if scratch.count < line.count { scratch = [UInt8](repeating: 0, count: max(line.count, 2 * scratch.count)) }
        let ascii: Bool = line.withUnsafeBytes { src in
            scratch.withUnsafeMutableBytes { dst in
                for i in 0..<src.count {
                    let c = src[i]
                    if c >= 0x80 { return false }
                    dst[i] = c &+ ((c >= 65 && c <= 90) ? 32 : 0)
                }
                return true
            }
        }
        return !ascii || range(of: needle, in: scratch[..<line.count]) != nil
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
