import Foundation

/// A log and the files rotated from it: `decisions.log` and `decisions.log.20261203T172600Z`
/// (the UTC time it was rotated; `-2`, `-3`… when one second saw two).
public enum LogFileSet {
    /// The rotated files of the log at `path`, oldest first.
    public static func rotated(of path: String) -> [String] {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let base = url.lastPathComponent + "."
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let stamped = names.compactMap { n -> (String, String, Int)? in
            guard n.hasPrefix(base), let (stamp, n2) = parse(String(n.dropFirst(base.count))) else { return nil }
            return (n, stamp, n2)
        }
        return stamped.sorted { ($0.1, $0.2) < ($1.1, $1.2) }.map { (dir as NSString).appendingPathComponent($0.0) }
    }

    /// `20261203T172600Z` or `20261203T172600Z-2`: the stamp and the counter (1 without one).
    static func parse(_ suffix: String) -> (String, Int)? {
        let parts = suffix.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard let stamp = parts.first, stamp.count == 16, stamp.utf8.enumerated().allSatisfy({ i, c in
            i == 8 ? c == UInt8(ascii: "T") : i == 15 ? c == UInt8(ascii: "Z") : (c >= 48 && c <= 57)
        }) else { return nil }
        if parts.count == 1 { return (String(stamp), 1) }
        guard let n = Int(parts[1]), n >= 2, n < 1_000_000 else { return nil }
        return (String(stamp), n)
    }

    /// The name a file rotated now gets, unused so far, and after the newest rotated file
    /// even if the clock stepped back (the set is read in name order).
    static func nextName(for path: String) -> String {
        var stamp = Timestamp.now().prefix(19).filter { $0 != "-" && $0 != ":" } + "Z"
        var n = 1
        let base = URL(fileURLWithPath: path).lastPathComponent + "."
        if let newest = rotated(of: path).last,
           let (s, c) = parse(String(URL(fileURLWithPath: newest).lastPathComponent.dropFirst(base.count))), stamp <= s {
            stamp = s
            n = c + 1
        }
        func name(_ n: Int) -> String { n == 1 ? "\(path).\(stamp)" : "\(path).\(stamp)-\(n)" }
        while FileManager.default.fileExists(atPath: name(n)) { n += 1 }
        return name(n)
    }
}
