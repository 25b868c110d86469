// libFuzzer target: the decision-log verifier, the start-up tail reader, and the readers'
// line handling (folded verdicts, byte prefilters, the report), in memory (see fuzz/README.md).
import Foundation
@testable import DecisionLog

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLog(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Everything after a first 0x00 is the head file.
    let cut = bytes.firstIndex(of: 0) ?? bytes.endIndex
    let head = cut < bytes.endIndex ? Data(bytes[(cut + 1)...]) : nil
    _ = LogVerifier.verify(log: Data(bytes[..<cut]), head: head, path: "fuzz.log")
    for start: UInt64 in [0, 1] {
        if let t = DecisionLog.tail(of: Array(bytes[..<cut]), at: start) {
            precondition(t.goodEnd <= start + UInt64(cut) && t.tornOctets <= cut, "tail out of range")
        }
    }
    // Each line as a record `log why` tells (its folded verdicts expanded, as every reader
    // does), and what the readers take from its octets: its time stamp, seq, string fields,
    // and whether a report or a filter can skip it.
    var records: [[String: Any]] = []
    var report = LogReport()
    var filter = LogFilter()
    filter.action = "reject"
    filter.check = "spf"
    let match = filter.matcher()
    for line in bytes[..<cut].split(separator: 10).prefix(64) {
        _ = SessionSearch.stamp(of: line)
        _ = LogFollower.seq(of: line)
        _ = ByteSearch.stringValue(ByteSearch.key("session"), in: line)
        _ = match(line)
        if !report.addWithoutParsing(line), let r = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] {
            report.add(r)
            records += FoldedChecks.expand(r)
        }
    }
    _ = report.text()
    _ = LogStory.tell(records, id: String(decoding: bytes.prefix(20), as: UTF8.self))
    return 0
}
