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
    public static func verify(path: String) throws -> LogVerification {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw LogFileError(path: path, reason: String(cString: strerror(errno))) }
        close(fd)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return verify(log: data, head: FileManager.default.contents(atPath: path + ".head"), path: path)
    }

    /// The same on bytes in memory (`path` only names them in the problems).
    public static func verify(log data: Data, head: Data?, path: String) -> LogVerification {
        var result = LogVerification()
        var prev = Digest.zero
        var expectSeq: Int?
        var hashes: [Int: String] = [:]
        var lineNo = 0
        var start = data.startIndex
        if !data.isEmpty && data.last != 10 {
            result.problems.append("\(path): file does not end with a newline: the last record is cut off")
        }
        while start < data.endIndex {
            let end = data[start...].firstIndex(of: 10) ?? data.endIndex
            let line = data[start..<end]
            lineNo += 1
            start = end < data.endIndex ? end + 1 : end
            if end == data.endIndex { break }  // reported above
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let seq = obj["seq"] as? Int, let p = obj["prev"] as? String else {
                result.problems.append("\(path):\(lineNo): not a valid log record")
                return result
            }
            if let e = expectSeq, seq != e {
                result.problems.append("\(path):\(lineNo): sequence \(seq), expected \(e): records deleted or reordered")
                return result
            }
            if p != prev {
                result.problems.append("\(path):\(lineNo): record \(seq) does not chain to the record before (edited, deleted or reordered)")
                return result
            }
            if obj["event"] as? String == "log.recovered" {
                let kept = obj["kept_at"] as? String ?? "?"
                result.notes.append("\(path):\(lineNo): record \(seq): a torn tail of \(obj["torn_octets"] as? Int ?? 0) octets after record \(obj["last_good_seq"] as? Int ?? 0) was cut off at start and kept in \(kept)")
            }
            prev = Digest.sha256Hex(Array(line))
            hashes[seq] = prev
            expectSeq = seq + 1
            result.records += 1
            result.lastSeq = seq
        }
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
        if hs > result.lastSeq {
            result.problems.append("\(path): the log ends at record \(result.lastSeq) but \(headPath) says \(hs) was written: records cut off the end")
        } else if let h = hashes[hs], h != hh {
            result.problems.append("\(path): record \(hs) does not match the hash in \(headPath)")
        }
        return result
    }
}
