import Foundation

/// Checks a decision log's chain: sequence numbers without gaps, every `prev` equal to the
/// SHA-256 of the line before, a final newline, and agreement with the `.head` file.
public struct LogVerification: Sendable {
    public var records = 0
    public var lastSeq = 0
    public var problems: [String] = []
    public var ok: Bool { problems.isEmpty }
}

public enum LogVerifier {
    public static func verify(path: String) throws -> LogVerification {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
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
            prev = Digest.sha256Hex(Array(line))
            hashes[seq] = prev
            expectSeq = seq + 1
            result.records += 1
            result.lastSeq = seq
        }
        let headPath = path + ".head"
        if let head = FileManager.default.contents(atPath: headPath),
           let obj = try? JSONSerialization.jsonObject(with: head) as? [String: Any],
           let hs = obj["seq"] as? Int, let hh = obj["hash"] as? String {
            if hs > result.lastSeq {
                result.problems.append("\(path): the log ends at record \(result.lastSeq) but \(headPath) says \(hs) was written: records cut off the end")
            } else if let h = hashes[hs], h != hh {
                result.problems.append("\(path): record \(hs) does not match the hash in \(headPath)")
            }
        }
        return result
    }
}
