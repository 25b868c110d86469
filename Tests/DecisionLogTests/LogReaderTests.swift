import Foundation
import Testing
@testable import DecisionLog

@Suite struct LogReaderTests {
    @Test func lastLinesReadsBackwardsAcrossBlocks() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        // Lines of 30,000 octets: the last three span several 64 KiB blocks.
        let all = (1...9).map { i in "\(i):" + String(repeating: Character(UnicodeScalar(UInt8(96 + i))), count: 30_000) }
        try Data((all.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: path))
        #expect(try LogReader.lastLines(path: path, count: 3) == Array(all.suffix(3)))
        #expect(try LogReader.lastLines(path: path, count: 1) == [all[8]])
        #expect(try LogReader.lastLines(path: path, count: 20) == all)
        #expect(try LogReader.lastLines(path: path, count: 0) == [])
    }

    @Test func lastLinesOfShortAndUnterminatedFiles() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        try Data("a\nb\nc".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try LogReader.lastLines(path: path, count: 2) == ["b", "c"])
        try Data().write(to: URL(fileURLWithPath: path))
        #expect(try LogReader.lastLines(path: path, count: 5) == [])
        #expect(throws: LogFileError.self) { try LogReader.lastLines(path: dir.file("missing"), count: 1) }
    }

    @Test func rawLinesKeepTheOctetsAndSayWhetherANewlineEndedThem() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        // A line longer than the 1 MiB read size is carried across reads whole.
        let long = [UInt8](repeating: 0xC3, count: (1 << 20) + 17)
        try Data([0x61, 0xFF, 10] + long + [10, 0x7A]).write(to: URL(fileURLWithPath: path))
        var seen: [([UInt8], Bool)] = []
        try LogReader.forEachRawLine(path: path) { seen.append((Array($0), $1)) }
        #expect(seen.map(\.0) == [[0x61, 0xFF], long, [0x7A]])
        #expect(seen.map(\.1) == [true, true, false])
    }
}

@Suite struct FoldedChecksExpansionTests {
    @Test func anEntryExpandsToTheVerdictItStandsFor() throws {
        let entries: [JSONValue] = [
            FoldedChecks.entry(stage: "helo", check: "helo", rule: nil, result: "pass", durationMs: 0.04912, reason: nil, subject: "mx.example.net"),
            FoldedChecks.entry(stage: "rcpt", check: "greylist", rule: nil, result: "exempt", durationMs: 0.07, reason: "client in allow list", subject: "b@example.org"),
            FoldedChecks.entry(stage: "message", check: "policy", rule: "thresholds", result: "score 0", durationMs: nil, reason: "below", subject: nil),
        ]
        var line: [UInt8] = []
        JSONValue.object([("seq", 7), ("ts", "2026-12-04T00:00:00.000Z"), ("event", "transaction.commit"), ("session", "s1"), ("client", "192.0.2.1"),
                          ("checks", .array(entries))]).write(into: &line)
        #expect(ByteSearch.contains(line[...], FoldedChecks.marker))
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        let out = FoldedChecks.expand(obj)
        #expect(out.count == 4)
        #expect(out[0]["event"] as? String == "verdict" && out[0]["stage"] as? String == "helo" && out[0]["check"] as? String == "helo")
        #expect(out[0]["helo"] as? String == "mx.example.net" && out[0]["duration_ms"] as? Double == 0.049 && out[0]["reason"] == nil)
        #expect(out[0]["session"] as? String == "s1" && out[0]["client"] as? String == "192.0.2.1" && out[0]["seq"] as? Int == 7)
        #expect(out[1]["recipient"] as? String == "b@example.org" && out[1]["reason"] as? String == "client in allow list")
        #expect(out[2]["check"] as? String == "policy" && out[2]["rule"] as? String == "thresholds" && out[2]["action"] as? String == "continue")
        #expect(out[3]["event"] as? String == "transaction.commit" && out[3]["checks"] == nil)
        // Hostile shapes are skipped, never trapped on.
        let odd: [String: Any] = ["event": "x", "checks": [[1, 2], "y", ["a", "b", "c", "d", 5, 6]]]
        #expect(FoldedChecks.expand(odd).count == 2)
    }
}

@Suite struct ByteSearchValueTests {
    @Test func aStringValueIsReadFromTheOctetsUnlessItHoldsAnEscape() {
        let line = Array(#"{"seq":1,"ts":"2026-12-04T00:00:00.000Z","session":"abc","policy":"p\"q","policy_version":"v1"}"#.utf8)[...]
        #expect(ByteSearch.stringValue(ByteSearch.key("ts"), in: line) == "2026-12-04T00:00:00.000Z")
        #expect(ByteSearch.stringValue(ByteSearch.key("session"), in: line) == "abc")
        #expect(ByteSearch.stringValue(ByteSearch.key("policy_version"), in: line) == "v1")
        #expect(ByteSearch.stringValue(ByteSearch.key("policy"), in: line) == nil)
        #expect(ByteSearch.stringValue(ByteSearch.key("client"), in: line) == nil)
        #expect(ByteSearch.stringValue(ByteSearch.key("x"), in: Array(#"{"x":"unterminated"#.utf8)[...]) == nil)
    }
}

@Suite struct CaseFoldPrefilterTests {
    @Test func aSenderIsFoundInAnyCaseAndANonASCIILineIsNeverRuledOut() {
        let needle = Array("alice@example.com".utf8)
        #expect(ByteSearch.mayContainIgnoringCase(Array(#"{"sender":"Alice@Example.COM"}"#.utf8)[...], needle))
        #expect(!ByteSearch.mayContainIgnoringCase(Array(#"{"sender":"bob@example.com"}"#.utf8)[...], needle))
        // U+212A KELVIN SIGN lower-cases to "k": a line with any non-ASCII octet is parsed.
        #expect(ByteSearch.mayContainIgnoringCase(Array("{\"sender\":\"\u{212A}@x\"}".utf8)[...], Array("k@x".utf8)))
        var f = LogFilter()
        f.sender = "ALICE@example.com"
        let match = f.matcher()
        #expect(match(Array(#"{"seq":1,"event":"transaction","sender":"alice@EXAMPLE.com"}"#.utf8)[...]).count == 1)
        #expect(match(Array(#"{"seq":1,"event":"transaction","sender":"bob@example.com"}"#.utf8)[...]).isEmpty)
    }
}
