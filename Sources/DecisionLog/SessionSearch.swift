import Foundation

/// Finds one session's records in a log fast: records are written in time order and a
/// session id carries its connect time, so a binary search over the file's byte offsets
/// finds where the session begins and only its span is read. An id without the time, or
/// one not found near its time (a clock stepped back), is looked for in the whole log.
public enum SessionSearch {
    /// The records of session `id` (a transaction id `SESSION.N` names its session), in log
    /// order, each with its raw line.
    /// The log's rotated files are searched too: from the one the session's time falls in.
    public static func records(of id: String, path: String) throws -> [(record: [String: Any], line: String)] {
        let session = SessionID.session(of: id)
        let files = LogFileSet.rotated(of: path) + [path]
        var found = Found()
        guard let t = SessionID.seconds(of: session) else {
            for f in files where !found.done { try scan(path: f, from: 0, session: session, into: &found) }
            return found.records
        }
        // Two seconds of slack for the open record's own time stamp; a session's first
        // record is written as it connects: a minute on without it, it is not there.
        let target = Timestamp.format(seconds: t - 2, millis: 0)
        // (A PROXY header may take up to 300 s before a refusal is logged.)
        let giveUp = Array(Timestamp.format(seconds: t + 400, millis: 0).utf8.prefix(19))
        let first = files.lastIndex { f in firstStamp(of: f).map { $0.lexicographicallyPrecedes(Array(target.utf8)) } ?? false } ?? 0
        for (i, f) in files.enumerated().dropFirst(first) where !found.done {
            try scan(path: f, from: i == first ? start(path: f, before: target) : 0, session: session, giveUpAfter: giveUp, into: &found)
        }
        if found.records.isEmpty {
            // Not where its time says (a clock stepped back): read everything.
            found = Found()
            for f in files where !found.done { try scan(path: f, from: 0, session: session, into: &found) }
        }
        return found.records
    }

    /// A search's progress across files.
    struct Found {
        var records: [(record: [String: Any], line: String)] = []
        /// The session closed, or a restart or the give-up time came first.
        var done = false
    }

    /// Reads forward from `from`; stops at the session's close, or at a gateway start after
    /// its records (a session the gateway's stop or crash cut off never closes).
    static func scan(path: String, from: Int, session: String, giveUpAfter: [UInt8]? = nil, into found: inout Found) throws {
        let needle = Array("\"session\":\"\(session)\"".utf8)
        let restart = Array("\"event\":\"gateway.start\"".utf8)
        try LogReader.scanLines(path: path, from: from) { line, _ in
            if found.records.isEmpty, let g = giveUpAfter, let ts = stamp(of: line), g.lexicographicallyPrecedes(ts) {
                found.done = true
                return false
            }
            if ByteSearch.contains(line, restart) && !found.records.isEmpty {
                found.done = true
                return false
            }
            guard ByteSearch.contains(line, needle),
                  let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  obj["session"] as? String == session else { return true }
            let text = String(decoding: line, as: UTF8.self)
            for r in FoldedChecks.expand(obj) { found.records.append((r, text)) }
            let event = obj["event"] as? String
            found.done = event == "session.close" || event == "session.refused"
            return !found.done
        }
    }

    /// The stamp of a file's first record.
    static func firstStamp(of path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 64, 0) }
        guard n > 0 else { return nil }
        return stamp(of: buf[..<n]).map(Array.init)
    }

    /// A line start at or before the first record stamped `stamp` or later (whose text
    /// begins `YYYY-MM-DDTHH:MM:SS`), in O(log size) reads.
    static func start(path: String, before stamp: String) throws -> Int {
        let target = Array(stamp.utf8.prefix(19))
        return try start(path: path) { head in Self.stamp(of: head).map { $0.lexicographicallyPrecedes(target) } }
    }

    /// A line start at or before the first line for which `precedes` is false, in a file
    /// whose lines are in order of what `precedes` judges (it is given a line's first
    /// octets; nil: cannot tell), in O(log size) reads; within 64 KiB of that line.
    static func start(path: String, precedes: (ArraySlice<UInt8>) -> Bool?) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogFileError.errno(path) }
        defer { close(fd) }
        return try start(fd: fd, path: path, precedes: precedes)
    }

    /// The same in an open file (`path` names it in errors).
    static func start(fd: Int32, path: String, precedes: (ArraySlice<UInt8>) -> Bool?) throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LogFileError.errno(path) }
        var lo = 0, hi = Int(st.st_size)
        while hi - lo > 1 << 16 {
            let mid = lo + (hi - lo) / 2
            guard let (lineStart, head) = firstLine(fd: fd, after: mid, limit: hi), let before = precedes(head) else { hi = mid; continue }
            if before { lo = lineStart } else { hi = mid }
        }
        return lo
    }

    /// The `YYYY-MM-DDTHH:MM:SS` of a record's time stamp, from its first 64 octets.
    static func stamp(of line: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        let head = line.prefix(64)
        guard let r = ByteSearch.range(of: tsKey, in: head), r.upperBound + 19 <= head.endIndex else { return nil }
        return head[r.upperBound..<(r.upperBound + 19)]
    }

    static let tsKey = Array("\"ts\":\"".utf8)

    /// The first line that starts after `offset` (and before `limit`), and its first octets
    /// (up to 8 KiB).
    static func firstLine(fd: Int32, after offset: Int, limit: Int) -> (Int, ArraySlice<UInt8>)? {
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
                guard s < limit else { return nil }
                return (s, buf[..<n])
            }
            at += n
        }
        return nil
    }
}
