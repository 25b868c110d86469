import Foundation

/// Checks a decision log's chain: sequence numbers without gaps, every `prev` equal to the
/// SHA-256 of the line before, a final newline, and agreement with the `.head` file.
public struct LogVerification: Sendable {
    public var records = 0
    public var lastSeq = 0
    public var problems: [String] = []
    /// Events an auditor should see that do not break the chain: a torn tail kept aside at
    /// start (`log.recovered`).
    public var notes: [String] = []
    /// How many files were read (a rotated set has several).
    public var files = 1
    public var ok: Bool { problems.isEmpty }
}

public enum LogVerifier {
    /// Streams the file (memory stays constant whatever its size) and checks it against its
    /// `.head`.
    public static func verify(path: String) throws -> LogVerification {
        let head = FileManager.default.contents(atPath: path + ".head")
        var chain = ChainChecker(path: path, headSeq: ChainChecker.headSeq(head))
        try LogReader.forEachRawLine(path: path) { line, terminated in
            chain.feed(line, terminated: terminated)
        }
        return chain.finish(head: head)
    }

    /// A log and the files rotated from it (`PATH.STAMP`), as one chain: each file must go
    /// on from the one before (so a file removed, reordered, cut short or edited is found),
    /// and a set that begins past record 1 needs a `log.retention` record saying so.
    /// `progress` is told the file and the records verified so far, every million records.
    public static func verifySet(path: String, progress: ((String, Int) -> Void)? = nil) throws -> LogVerification {
        let files = LogFileSet.rotated(of: path) + [path]
        let head = FileManager.default.contents(atPath: path + ".head")
        let headSeq = ChainChecker.headSeq(head)
        var total = LogVerification()
        total.files = files.count
        var after: (file: String, seq: Int, hash: String)?
        var headHash: String?, firstSeq: Int?, retainedFrom = 0
        for (i, f) in files.enumerated() {
            var chain = ChainChecker(path: f, headSeq: headSeq, after: after, mayStartLater: i == 0)
            let before = total.records
            try LogReader.forEachRawLine(path: f) {
                chain.feed($0, terminated: $1)
                if let progress, !chain.stopped, chain.result.records % 1_000_000 == 0, chain.result.records > 0 { progress(f, before + chain.result.records) }
            }
            total.records += chain.result.records
            total.problems += chain.result.problems
            total.notes += chain.result.notes
            headHash = chain.headHash ?? headHash
            retainedFrom = max(retainedFrom, chain.retainedFrom)
            if i == 0 { firstSeq = chain.firstSeq }
            guard chain.result.ok else { return total }
            if chain.result.records > 0 {
                after = (f, chain.last.seq, chain.last.hash)
                total.lastSeq = chain.last.seq
            }
        }
        if let s = firstSeq, s > 1 {
            if retainedFrom >= s - 1 {
                total.notes.append("\(files[0]): the set begins at record \(s): records up to \(s - 1) were deleted under retention (log.retention)")
            } else {
                total.problems.append("\(files[0]):1: the set begins at record \(s), and no log.retention record says the records before it were deleted: a file is missing from the start")
            }
        }
        total.problems += ChainChecker.headProblems(path: path, head: head, records: total.records, lastSeq: total.lastSeq, headHash: headHash)
        return total
    }

    /// The same on bytes in memory (`path` only names them in the problems).
    public static func verify(log data: Data, head: Data?, path: String) -> LogVerification {
        var chain = ChainChecker(path: path, headSeq: ChainChecker.headSeq(head))
        let bytes = [UInt8](data)
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 10) ?? bytes.count
            chain.feed(bytes[start..<end], terminated: end < bytes.count)
            start = end + 1
        }
        return chain.finish(head: head)
    }
}

/// The verifier's state, fed one line at a time. It keeps the previous record's hash and the
/// hash of the record the head names, nothing more. Integrity rests on the chain, not on a
/// JSON parser: each line's `seq` and `prev` are read from the fixed prefix the writer puts
/// first, and any other change to a line breaks the next line's `prev` (or, for the last
/// line, the head's hash).
struct ChainChecker {
    let path: String
    let headSeq: Int?
    /// In a rotated set: the file before this one, its last record's number and hash.
    let after: (file: String, seq: Int, hash: String)?
    /// The first file of a set may begin past record 1 (the files before it deleted).
    let mayStartLater: Bool
    private(set) var result = LogVerification()
    private var prev = Digest.zero
    private(set) var headHash: String?
    /// Where this file begins, and the highest record a `log.retention` record says is deleted.
    private(set) var firstSeq: Int?
    private(set) var retainedFrom = 0
    private var lineNo = 0
    private(set) var stopped = false

    init(path: String, headSeq: Int?, after: (file: String, seq: Int, hash: String)? = nil, mayStartLater: Bool = false) {
        self.path = path
        self.headSeq = headSeq
        self.after = after
        self.mayStartLater = mayStartLater
        if let a = after { prev = a.hash }
    }

    /// The chain so far: the last record's number and hash.
    var last: (seq: Int, hash: String) { (result.lastSeq, prev) }

    static func headSeq(_ head: Data?) -> Int? {
        head.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }?["seq"] as? Int
    }

    mutating func feed(_ line: ArraySlice<UInt8>, terminated: Bool) {
        guard !stopped else { return }
        lineNo += 1
        guard terminated else {
            // Only a last line can be unterminated: the head still says whether records are missing.
            result.problems.append("\(path): file does not end with a newline: the last record is cut off")
            return
        }
        guard let p = RecordPrefix(line) else {
            fail("\(path):\(lineNo): not a valid log record")
            return
        }
        if result.records == 0 && !continuesTheFileBefore(p, line) { return }
        if result.records > 0, p.seq != result.lastSeq + 1 {
            fail("\(path):\(lineNo): sequence \(p.seq), expected \(result.lastSeq + 1): records deleted or reordered")
            return
        }
        guard line[p.prevRange].elementsEqual(prev.utf8) else {
            fail("\(path):\(lineNo): record \(p.seq) does not chain to the record before (edited, deleted or reordered)")
            return
        }
        if p.event.elementsEqual("log.recovered".utf8) { noteRecovery(line, seq: p.seq) }
        if p.event.elementsEqual("log.retention".utf8) {
            let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
            retainedFrom = max(retainedFrom, (obj?["through_seq"] as? Int) ?? 0)
        }
        prev = Digest.sha256Hex(line)
        if p.seq == headSeq { headHash = prev }
        result.records += 1
        result.lastSeq = p.seq
    }

    /// A set's later file must go on from the file before; its first may begin later
    /// (checked against the retention records once the set is read).
    private mutating func continuesTheFileBefore(_ p: RecordPrefix, _ line: ArraySlice<UInt8>) -> Bool {
        firstSeq = p.seq
        if let a = after, p.seq != a.seq + 1 || !line[p.prevRange].elementsEqual(a.hash.utf8) {
            fail("\(path):\(lineNo): record \(p.seq) does not continue \(a.file), whose last record is \(a.seq): a file between them is missing, or the files are out of order or cut short")
            return false
        }
        if after == nil && mayStartLater && !line[p.prevRange].elementsEqual(Digest.zero.utf8) {
            prev = String(decoding: line[p.prevRange], as: UTF8.self)
            result.lastSeq = p.seq - 1
        }
        return true
    }

    private mutating func fail(_ problem: String) {
        result.problems.append(problem)
        stopped = true
    }

    private mutating func noteRecovery(_ line: ArraySlice<UInt8>, seq: Int) {
        let obj = (try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]) ?? [:]
        let kept = obj["kept_at"] as? String ?? "?"
        result.notes.append("\(path):\(lineNo): record \(seq): a torn tail of \(obj["torn_octets"] as? Int ?? 0) octets after record \(obj["last_good_seq"] as? Int ?? 0) was cut off at start and kept in \(kept)")
    }

    func finish(head: Data?) -> LogVerification {
        var result = self.result
        if !stopped {
            result.problems += Self.headProblems(path: path, head: head, records: result.records, lastSeq: result.lastSeq, headHash: headHash)
        }
        return result
    }

    /// What the `.head` file says against the chain: records cut off the end, or an edited last record.
    static func headProblems(path: String, head: Data?, records: Int, lastSeq: Int, headHash: String?) -> [String] {
        let headPath = path + ".head"
        guard let head else {
            return records > 0 ? ["\(path): \(headPath) is missing: without it records cut off the end cannot be ruled out"] : []
        }
        guard let obj = try? JSONSerialization.jsonObject(with: head) as? [String: Any],
              let hs = obj["seq"] as? Int, let hh = obj["hash"] as? String else {
            return ["\(path): \(headPath) is not a valid head record"]
        }
        if hs > lastSeq {
            return ["\(path): the log ends at record \(lastSeq) but \(headPath) says \(hs) was written: records cut off the end"]
        } else if let h = headHash, h != hh {
            return ["\(path): record \(hs) does not match the hash in \(headPath)"]
        }
        return []
    }
}

/// The fixed start of every record the writer puts out:
/// `{"seq":N,"ts":"…","prev":"<64 hex>"` then `,"event":"…"`.
public struct RecordPrefix {
    public let seq: Int
    let prevRange: Range<Int>
    /// The event's name (up to 64 octets), or empty.
    let event: ArraySlice<UInt8>
    /// The `prev` hash (64 hex digits).
    public let prev: String

    public init?(_ line: ArraySlice<UInt8>) {
        var i = line.startIndex
        func expect(_ s: String) -> Bool {
            for b in s.utf8 {
                guard i < line.endIndex, line[i] == b else { return false }
                i += 1
            }
            return true
        }
        guard line.last == UInt8(ascii: "}"), expect("{\"seq\":") else { return nil }
        var seq = 0, digits = 0
        while i < line.endIndex, line[i] >= 48, line[i] <= 57, digits < 18 {
            seq = seq * 10 + Int(line[i] - 48)
            digits += 1
            i += 1
        }
        guard digits > 0, expect(",\"ts\":\"") else { return nil }
        while i < line.endIndex, line[i] != UInt8(ascii: "\""), line[i] != UInt8(ascii: "\\") { i += 1 }
        guard expect("\",\"prev\":\"") else { return nil }
        let start = i
        while i < line.endIndex, i - start < 64, Self.isHex(line[i]) { i += 1 }
        let end = i
        guard end - start == 64, expect("\"") else { return nil }
        self.seq = seq
        self.prevRange = start..<end
        self.prev = String(decoding: line[start..<end], as: UTF8.self)
        var e = i
        if expect(",\"event\":\"") {
            e = i
            while i < line.endIndex, i - e < 64, line[i] != UInt8(ascii: "\"") { i += 1 }
        }
        self.event = line[e..<i]
    }

    static func isHex(_ b: UInt8) -> Bool { (b >= 48 && b <= 57) || (b >= 97 && b <= 102) }
}
