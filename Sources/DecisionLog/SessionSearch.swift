import Foundation

/// Finds one session's records in a log fast: records are written in time order and a
/// session id carries its connect time, so a binary search over the file's byte offsets
/// finds where the session begins and only its span is read. Only an id without the time
/// is looked for in the whole file; a clock stepped back by more than a minute can hide a
/// session from this search (`log query --session` reads everything).
public enum SessionSearch {
    /// The records of session `id` (a transaction id `SESSION.N` names its session), in log
    /// order, each with its raw line.
    public static func records(of id: String, path: String) throws -> [(record: [String: Any], line: String)] {
        let session = SessionID.session(of: id)
        if let t = SessionID.seconds(of: session) {
            // Two seconds of slack for the open record's own time stamp.
            let from = try start(path: path, before: Timestamp.format(seconds: t - 2, millis: 0))
            // A session's first record is written as it connects: a minute on without it, it is not there.
            return try scan(path: path, from: from, session: session,
                            giveUpAfter: Array(Timestamp.format(seconds: t + 60, millis: 0).utf8.prefix(19)))
        }
        return try scan(path: path, from: 0, session: session)
    }

    /// Reads forward from `from`; stops at the session's close, or at a gateway start after
    /// its records (a session the gateway's stop or crash cut off never closes).
    static func scan(path: String, from: Int, session: String, giveUpAfter: [UInt8]? = nil) throws -> [(record: [String: Any], line: String)] {
        let needle = Array("\"session\":\"\(session)\"".utf8)
        let restart = Array("\"event\":\"gateway.start\"".utf8)
        var out: [(record: [String: Any], line: String)] = []
        try LogReader.scanLines(path: path, from: from) { line, _ in
            if out.isEmpty, let g = giveUpAfter, let ts = stamp(of: line), g.lexicographicallyPrecedes(ts) { return false }
            if contains(line, restart) { return out.isEmpty }
            guard contains(line, needle),
                  let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  obj["session"] as? String == session else { return true }
            out.append((obj, String(decoding: line, as: UTF8.self)))
            let event = obj["event"] as? String
            return event != "session.close" && event != "session.refused"
        }
        return out
    }

    /// Whether `needle` (not empty) occurs in `line`: memchr for its first octet, then a compare.
    static func contains(_ line: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
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

    /// A line start at or before the first record stamped `stamp` or later (whose text
    /// begins `YYYY-MM-DDTHH:MM:SS`), in O(log size) reads.
    static func start(path: String, before stamp: String) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogFileError.errno(path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LogFileError.errno(path) }
        let target = Array(stamp.utf8.prefix(19))
        var lo = 0, hi = Int(st.st_size)
        while hi - lo > 1 << 16 {
            let mid = lo + (hi - lo) / 2
            guard let (lineStart, ts) = firstStamp(fd: fd, after: mid, limit: hi) else { hi = mid; continue }
            if ts.lexicographicallyPrecedes(target) { lo = lineStart } else { hi = mid }
        }
        return lo
    }

    /// The `YYYY-MM-DDTHH:MM:SS` of a record's time stamp, from its first 64 octets.
    static func stamp(of line: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        let head = line.prefix(64)
        guard let r = head.firstRange(of: tsKey), r.upperBound + 19 <= head.endIndex else { return nil }
        return head[r.upperBound..<(r.upperBound + 19)]
    }

    static let tsKey = Array("\"ts\":\"".utf8)

    /// The first line that starts after `offset` (and before `limit`), and its time stamp.
    static func firstStamp(fd: Int32, after offset: Int, limit: Int) -> (Int, [UInt8])? {
        var buf = [UInt8](repeating: 0, count: 8192)
        var at = offset
        var lineStart: Int?
        while at < limit {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 8192, off_t(at)) }
            guard n > 0 else { return nil }
            if lineStart == nil, let nl = buf[..<n].firstIndex(of: 10) {
                lineStart = at + nl + 1
                at = at + nl + 1
                continue
            }
            if let s = lineStart {
                guard s < limit, let ts = stamp(of: buf[..<n]) else { return nil }
                return (s, Array(ts))
            }
            at += n
        }
        return nil
    }
}
