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
    private(set) var result = LogVerification()
    private var prev = Digest.zero
    private var headHash: String?
    private var lineNo = 0
    private var stopped = false

    init(path: String, headSeq: Int?) {
        self.path = path
        self.headSeq = headSeq
    }

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
        if result.records > 0, p.seq != result.lastSeq + 1 {
            fail("\(path):\(lineNo): sequence \(p.seq), expected \(result.lastSeq + 1): records deleted or reordered")
            return
        }
        guard line[p.prevRange].elementsEqual(prev.utf8) else {
            fail("\(path):\(lineNo): record \(p.seq) does not chain to the record before (edited, deleted or reordered)")
            return
        }
        if p.isRecovery { noteRecovery(line, seq: p.seq) }
        prev = Digest.sha256Hex(line)
        if p.seq == headSeq { headHash = prev }
        result.records += 1
        result.lastSeq = p.seq
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
        let headPath = path + ".head"
        guard let head else {
            if result.records > 0 {
                result.problems.append("\(path): \(headPath) is missing: without it records cut off the end cannot be ruled out")
            }
            return result
        }
        guard let obj = try? JSONSerialization.jsonObject(with: head) as? [String: Any],
              let hs = obj["seq"] as? Int, let hh = obj["hash"] as? String else {
            result.problems.append("\(path): \(headPath) is not a valid head record")
            return result
        }
        guard !stopped else { return result }
        if hs > result.lastSeq {
            result.problems.append("\(path): the log ends at record \(result.lastSeq) but \(headPath) says \(hs) was written: records cut off the end")
        } else if let h = headHash, h != hh {
            result.problems.append("\(path): record \(hs) does not match the hash in \(headPath)")
        }
        return result
    }
}

/// The fixed start of every record the writer puts out:
/// `{"seq":N,"ts":"…","prev":"<64 hex>"` then `,"event":"…"`.
struct RecordPrefix {
    let seq: Int
    let prevRange: Range<Int>
    let isRecovery: Bool

    init?(_ line: ArraySlice<UInt8>) {
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
        self.isRecovery = expect(",\"event\":\"log.recovered\"")
    }

    static func isHex(_ b: UInt8) -> Bool { (b >= 48 && b <= 57) || (b >= 97 && b <= 102) }
}
