import Foundation
import Testing
@testable import DecisionLog

/// A fresh directory under NSTemporaryDirectory().
final class TempDir: Sendable {
    let path: String

    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("mailgate-dltest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Deletes the directory; call it from a `defer` (a deinit could run before the test is done).
    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String = "decisions.log") -> String { (path as NSString).appendingPathComponent(name) }
}

let zeroHash = String(repeating: "0", count: 64)

func record(_ i: Int) -> LogRecord {
    LogRecord(event: "test", session: "s\(i)", fields: [("n", .int(i)), ("tag", .string("rec-\(i)"))])
}

/// Writes records `range` to the log at `path` with a fresh DecisionLog and closes it.
func writeLog(_ path: String, _ range: ClosedRange<Int>, durability: LogDurability = .groupCommit(milliseconds: 1)) async throws {
    let log = try DecisionLog(path: path, durability: durability)
    for i in range { log.append(record(i)) }
    try await log.flush()
    log.close()
}

func lines(_ path: String) throws -> [String] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
}

func parse(_ line: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
}

func rewrite(_ path: String, _ body: (inout Data) throws -> Void) throws {
    var d = try Data(contentsOf: URL(fileURLWithPath: path))
    try body(&d)
    try d.write(to: URL(fileURLWithPath: path))
}

@Suite struct DecisionLogWriteTests {
    @Test func appendFlushAndVerify() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let log = try DecisionLog(path: path)
        var seqs: [Int] = []
        for i in 1...5 { seqs.append(log.append(record(i))) }
        #expect(seqs == [1, 2, 3, 4, 5])
        try await log.flush()
        #expect(log.isHealthy)

        let ls = try lines(path)
        #expect(ls.count == 6)  // five records and the empty string after the final newline
        #expect(ls.last == "")
        for (i, l) in ls.dropLast().enumerated() {
            let o = try parse(l)
            #expect(o["seq"] as? Int == i + 1)
            #expect(o["event"] as? String == "test")
            #expect(o["session"] as? String == "s\(i + 1)")
            #expect(o["n"] as? Int == i + 1)
            #expect(o["tag"] as? String == "rec-\(i + 1)")
        }
        #expect(try parse(ls[0])["prev"] as? String == zeroHash)
        #expect(try parse(ls[1])["prev"] as? String != zeroHash)

        let v = try LogVerifier.verify(path: path)
        #expect(v.ok)
        #expect(v.problems == [])
        #expect(v.records == 5)
        #expect(v.lastSeq == 5)

        let head = try parse(String(contentsOfFile: path + ".head", encoding: .utf8))
        #expect(head["seq"] as? Int == 5)
        #expect((head["hash"] as? String)?.count == 64)
        log.close()
        #expect(!log.isHealthy)
    }

    @Test func recordLayout() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let log = try DecisionLog(path: path)
        log.append(LogRecord(event: "connect", session: "abc", fields: [("client", "192.0.2.1"), ("port", 25), ("tls", false)]))
        log.append(LogRecord(event: "noop"))
        try await log.flush()
        log.close()
        let ls = try lines(path)
        #expect(ls[0].hasPrefix("{\"seq\":1,\"ts\":\""))
        #expect(ls[0].hasSuffix("\",\"prev\":\"\(zeroHash)\",\"event\":\"connect\",\"session\":\"abc\",\"client\":\"192.0.2.1\",\"port\":25,\"tls\":false}"))
        #expect(ls[1].hasPrefix("{\"seq\":2,\"ts\":\""))
        #expect(ls[1].hasSuffix("\"event\":\"noop\"}"))
        #expect(!ls[1].contains("session"))
        let ts = try #require(try parse(ls[0])["ts"] as? String)
        #expect(ts.count == 24)
        #expect(ts.hasSuffix("Z"))
        #expect(Array(ts)[10] == "T")
    }

    @Test func appendsFromManyTasksStayChained() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let log = try DecisionLog(path: path)
        await withTaskGroup(of: Void.self) { g in
            for t in 0..<8 {
                g.addTask {
                    for i in 0..<25 { log.append(LogRecord(event: "e", fields: [("t", .int(t)), ("i", .int(i))])) }
                }
            }
        }
        try await log.flush()
        log.close()
        let v = try LogVerifier.verify(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.records == 200)
        #expect(v.lastSeq == 200)
    }

    @Test func reopeningContinuesSequenceAndChain() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let first = try DecisionLog(path: path)
        #expect(first.append(record(1)) == 1)
        #expect(first.append(record(2)) == 2)
        #expect(first.append(record(3)) == 3)
        try await first.flush()
        first.close()

        let second = try DecisionLog(path: path)
        #expect(second.append(record(4)) == 4)
        #expect(second.append(record(5)) == 5)
        try await second.flush()
        second.close()

        try await writeLog(path, 6...7)

        let v = try LogVerifier.verify(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.records == 7)
        #expect(v.lastSeq == 7)
        let ls = try lines(path).dropLast()
        #expect(ls.count == 7)
        #expect(try ls.map { try parse($0)["seq"] as? Int } == [1, 2, 3, 4, 5, 6, 7])
        // The first record of the second instance chains to the last of the first.
        #expect(try parse(ls[3])["prev"] as? String != zeroHash)
    }

    @Test func reopeningAnEmptyFileStartsAtOne() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        FileManager.default.createFile(atPath: path, contents: Data())
        let log = try DecisionLog(path: path)
        #expect(log.append(record(1)) == 1)
        try await log.flush()
        log.close()
        #expect(try LogVerifier.verify(path: path).ok)
    }

    @Test func createsMissingDirectories() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file("a/b/decisions.log")
        try await writeLog(path, 1...2)
        #expect(try LogVerifier.verify(path: path).records == 2)
    }

    @Test(arguments: [LogDurability.fsync, .groupCommit(milliseconds: 5), .groupCommit(milliseconds: 40)])
    func appendDurablyWritesBeforeReturning(_ durability: LogDurability) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let log = try DecisionLog(path: path, durability: durability)
        #expect(log.durability == durability)
        for i in 1...3 {
            try await log.appendDurably(record(i))
            // On disk as soon as appendDurably returns, without flush(). (The head file may
            // lag: it is written at most once a second, and on close.)
            let ls = try lines(path).dropLast()
            #expect(ls.count == i)
            let head = try parse(String(contentsOfFile: path + ".head", encoding: .utf8))
            #expect((head["seq"] as? Int ?? 0) <= i)
        }
        // Concurrent durable appends all complete and all land.
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in 4...13 { g.addTask { try await log.appendDurably(record(i)) } }
            try await g.waitForAll()
        }
        #expect(try lines(path).dropLast().count == 13)
        log.close()
        let v = try LogVerifier.verify(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.records == 13)
    }

    @Test func closedLogRefusesRecords() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let log = try DecisionLog(path: path, durability: .fsync)
        log.append(record(1))
        log.close()
        log.close()  // idempotent
        #expect(!log.isHealthy)
        #expect(log.append(record(2)) == -1)
        let err = await #expect(throws: DecisionLogError.self) { try await log.appendDurably(record(3)) }
        if case .closed? = err {} else { Issue.record("expected .closed, got \(String(describing: err))") }
        // close() wrote out what was queued.
        let v = try LogVerifier.verify(path: path)
        #expect(v.ok)
        #expect(v.records == 1)
    }

    /// A write cut short (full disk, crash) leaves a torn tail. Opening keeps it aside, cuts
    /// the log back to its last valid record, and goes on with a record that says so.
    @Test func tornTailIsKeptAsideAndTheChainGoesOn() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        try await writeLog(path, 1...3)
        let torn = Data("{\"seq\":4,\"pr".utf8)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: torn)
        try handle.close()
        #expect(!(try LogVerifier.verify(path: path).ok))

        let log = try DecisionLog(path: path)
        let r = try #require(log.recovered)
        #expect(r.tornOctets == torn.count)
        #expect(r.lastGoodSeq == 3)
        #expect(FileManager.default.contents(atPath: r.keptAt) == torn)
        #expect(log.append(record(9)) == 5)
        try await log.flush()
        log.close()

        let ls = try lines(path).dropLast()
        #expect(ls.count == 5)
        let note = try parse(ls[3])
        #expect(note["event"] as? String == "log.recovered")
        #expect(note["torn_octets"] as? Int == torn.count)
        #expect(note["kept_at"] as? String == r.keptAt)
        #expect(note["last_good_seq"] as? Int == 3)
        let v = try LogVerifier.verify(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.records == 5)
        #expect(v.notes == ["\(path):4: record 4: a torn tail of \(torn.count) octets after record 3 was cut off at start and kept in \(r.keptAt)"])
    }

    @Test func aLogWithNoValidRecordIsKeptWholeAndStartsAgain() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        try Data("not json at all\n".utf8).write(to: URL(fileURLWithPath: path))
        let log = try DecisionLog(path: path)
        let r = try #require(log.recovered)
        #expect(r.tornOctets == 16)
        #expect(r.lastGoodSeq == 0)
        #expect(FileManager.default.contents(atPath: r.keptAt) == Data("not json at all\n".utf8))
        try await log.flush()
        log.close()
        let v = try LogVerifier.verify(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.records == 1)
    }

    /// A log cut back past records its head says were written is no torn write: the gateway
    /// refuses to start rather than hide the loss behind a "recovered" note.
    @Test func aLogCutPastItsHeadIsRefusedNotRecovered() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        try await writeLog(path, 1...5)
        let ls = try lines(path)
        try Data((ls[0..<3].joined(separator: "\n") + "\n{\"seq\":4,\"pr").utf8).write(to: URL(fileURLWithPath: path))
        let err = #expect(throws: DecisionLogError.self) { try DecisionLog(path: path) }
        if case .headAhead(let p, let h, let l)? = err {
            #expect(p == path)
            #expect(h == 5)
            #expect(l == 3)
        } else {
            Issue.record("expected .headAhead, got \(String(describing: err))")
        }
        // Nothing was cut or moved.
        #expect(try lines(path).count == 4)
    }

    /// A valid-looking last line that does not chain to the one before is not the anchor.
    @Test func aLastLineThatDoesNotChainIsTorn() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        try await writeLog(path, 1...3)
        try FileManager.default.removeItem(atPath: path + ".head")
        let stray = "{\"seq\":4,\"prev\":\"\(zeroHash)\",\"event\":\"stray\"}\n"
        let h = try #require(FileHandle(forWritingAtPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data(stray.utf8))
        try h.close()
        let log = try DecisionLog(path: path)
        #expect(log.recovered?.lastGoodSeq == 3)
        #expect(log.recovered?.tornOctets == stray.utf8.count)
        log.close()
    }

    @Test func aLastMebibyteWithoutAValidRecordIsRefused() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        try Data(String(repeating: "x", count: (1 << 20) + 100).utf8).write(to: URL(fileURLWithPath: path))
        let err = #expect(throws: DecisionLogError.self) { try DecisionLog(path: path) }
        if case .unreadableTail(let p)? = err { #expect(p == path) } else { Issue.record("expected .unreadableTail, got \(String(describing: err))") }
    }

    @Test func initOnUnwritablePathThrows() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let blocker = dir.file("file")
        FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        // A path below a regular file cannot be opened.
        let err = #expect(throws: DecisionLogError.self) { try DecisionLog(path: blocker + "/decisions.log") }
        if case .open? = err {} else { Issue.record("expected .open, got \(String(describing: err))") }
    }
}

@Suite struct LogVerifierTests {
    /// A closed, verified log of five records (tags rec-1 … rec-5).
    func fiveRecords() async throws -> (TempDir, String) {
        let dir = try TempDir()
        let path = dir.file()
        try await writeLog(path, 1...5)
        let v = try LogVerifier.verify(path: path)
        #expect(v.ok && v.records == 5)
        return (dir, path)
    }

    func replace(_ path: String, _ from: String, with to: String) throws {
        try rewrite(path) { d in
            let r = try #require(d.range(of: Data(from.utf8)))
            d.replaceSubrange(r, with: Data(to.utf8))
        }
    }

    @Test func oneChangedByteInTheMiddle() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        try replace(path, "rec-3", with: "rec-X")
        let v = try LogVerifier.verify(path: path)
        #expect(!v.ok)
        #expect(v.problems == ["\(path):4: record 4 does not chain to the record before (edited, deleted or reordered)"])
        #expect(v.records == 3)
    }

    @Test func changedByteThatBreaksTheJSON() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        // The chain, not a JSON parser, catches it: the next record's prev no longer matches.
        try replace(path, "\"tag\":\"rec-2\"", with: "\"tag\" \"rec-2\"")
        let v = try LogVerifier.verify(path: path)
        #expect(v.problems == ["\(path):3: record 3 does not chain to the record before (edited, deleted or reordered)"])
        try replace(path, "{\"seq\":3,", with: "{\"seq\" 3,")
        #expect(try LogVerifier.verify(path: path).problems == ["\(path):3: not a valid log record"])
    }

    @Test func changedLastRecordIsCaughtByTheHead() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        try replace(path, "rec-5", with: "rec-X")
        let v = try LogVerifier.verify(path: path)
        #expect(v.problems == ["\(path): record 5 does not match the hash in \(path).head"])
    }

    @Test func deletedMiddleLine() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        var ls = try lines(path)
        ls.remove(at: 2)
        try Data(ls.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
        let v = try LogVerifier.verify(path: path)
        #expect(!v.ok)
        #expect(v.problems == ["\(path):3: sequence 4, expected 3: records deleted or reordered"])
    }

    @Test func deletedFirstLine() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        var ls = try lines(path)
        ls.remove(at: 0)
        try Data(ls.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
        let v = try LogVerifier.verify(path: path)
        #expect(v.problems == ["\(path):1: record 2 does not chain to the record before (edited, deleted or reordered)"])
    }

    @Test func reorderedLines() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        var ls = try lines(path)
        ls.swapAt(1, 2)
        try Data(ls.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
        let v = try LogVerifier.verify(path: path)
        #expect(v.problems == ["\(path):2: sequence 3, expected 2: records deleted or reordered"])
    }

    @Test func lastRecordCutOffIsCaughtByTheHead() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        var ls = try lines(path)
        ls.remove(at: 4)  // the whole last record, newline included
        try Data(ls.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
        #expect(try lines(path).count == 5)
        let v = try LogVerifier.verify(path: path)
        #expect(!v.ok)
        #expect(v.records == 4)
        #expect(v.problems == ["\(path): the log ends at record 4 but \(path).head says 5 was written: records cut off the end"])
        // Deleting the head file does not hide the cut: a log without its head fails.
        try FileManager.default.removeItem(atPath: path + ".head")
        let headless = try LogVerifier.verify(path: path)
        #expect(headless.problems == ["\(path): \(path).head is missing: without it records cut off the end cannot be ruled out"])
        // Nor does a head that is not a head.
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: path + ".head"))
        #expect(try LogVerifier.verify(path: path).problems == ["\(path): \(path).head is not a valid head record"])
    }

    @Test func missingFinalNewline() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        try rewrite(path) { d in d.removeLast() }
        let v = try LogVerifier.verify(path: path)
        #expect(!v.ok)
        #expect(v.problems.first == "\(path): file does not end with a newline: the last record is cut off")
        #expect(v.records == 4)
    }

    @Test func lastRecordPartlyCutOff() async throws {
        let (dir, path) = try await fiveRecords()
        defer { dir.remove() }
        try rewrite(path) { d in d.removeLast(20) }
        let v = try LogVerifier.verify(path: path)
        #expect(!v.ok)
        #expect(v.problems.contains("\(path): file does not end with a newline: the last record is cut off"))
        #expect(v.problems.contains("\(path): the log ends at record 4 but \(path).head says 5 was written: records cut off the end"))
    }

    @Test func emptyLogIsValid() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        FileManager.default.createFile(atPath: path, contents: Data())
        let v = try LogVerifier.verify(path: path)
        #expect(v.ok)
        #expect(v.records == 0)
        #expect(v.lastSeq == 0)
    }

    @Test func missingLogThrows() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        #expect(throws: (any Error).self) { try LogVerifier.verify(path: dir.file("nope.log")) }
    }
}

@Suite struct JSONTests {
    @Test func escapingInARecord() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let values: [(String, String)] = [
            ("quote", "say \"hi\""),
            ("back", "C:\\dir\\"),
            ("ctl", "a\u{1}b\u{1f}c\u{7f}d\u{0}"),
            ("nl", "line1\nline2\r\n\tend"),
            ("ls", "x\u{2028}y\u{2029}z"),
            ("uni", "Grüße 🙂"),
            ("we\"ird\nkey", "v"),
        ]
        let log = try DecisionLog(path: path)
        log.append(LogRecord(event: "ev\"ent\n", session: "se\\ss", fields: values.map { ($0.0, .string($0.1)) }))
        log.append(record(2))
        try await log.flush()
        log.close()

        let ls = try lines(path)
        #expect(ls.count == 3)  // two records: nothing in the first broke the line
        let line = ls[0]
        #expect(line.contains(#""event":"ev\"ent\n","session":"se\\ss""#))
        #expect(line.contains(#""quote":"say \"hi\"""#))
        #expect(line.contains(#""back":"C:\\dir\\""#))
        #expect(line.contains(#""ctl":"a\u0001b\u001fc\u007fd\u0000""#))
        #expect(line.contains(#""nl":"line1\nline2\r\n\tend""#))
        #expect(line.contains(#""ls":"x\u2028y\u2029z""#))
        #expect(line.contains(#""uni":"Grüße 🙂""#))
        #expect(line.contains(#""we\"ird\nkey":"v""#))
        #expect(!line.contains("\r"))

        let o = try parse(line)
        #expect(o["event"] as? String == "ev\"ent\n")
        #expect(o["session"] as? String == "se\\ss")
        for (k, v) in values { #expect(o[k] as? String == v, "field \(k.debugDescription)") }
        #expect(try LogVerifier.verify(path: path).ok)
    }

    @Test func writesValuesExactly() {
        func w(_ v: JSONValue) -> String { var s = ""; v.write(into: &s); return s }
        #expect(w("a\"b\\c\nd\re\tf\u{8}") == #""a\"b\\c\nd\re\tf\u0008""#)
        #expect(w(.int(-42)) == "-42")
        #expect(w(true) == "true")
        #expect(w(.bool(false)) == "false")
        #expect(w(.null) == "null")
        #expect(w(.double(1.5)) == "1.5")
        #expect(w(.double(.infinity)) == "null")
        #expect(w(.double(.nan)) == "null")
        #expect(w(.array([])) == "[]")
        #expect(w(.object([])) == "{}")
        #expect(w(.object([("a", 1), ("b", .array([true, .null, .double(0.25), "x"])), ("c\"", .object([("d", "e")]))]))
            == #"{"a":1,"b":[true,null,0.25,"x"],"c\"":{"d":"e"}}"#)
    }

    @Test func objectEqualityKeepsOrder() {
        #expect(JSONValue.object([("a", 1), ("b", 2)]) == .object([("a", 1), ("b", 2)]))
        #expect(JSONValue.object([("a", 1), ("b", 2)]) != .object([("b", 2), ("a", 1)]))
        #expect(JSONValue.object([("a", 1)]) != .object([("a", 1), ("b", 2)]))
        #expect(JSONValue.int(1) != .double(1))
        #expect(JSONValue.array(["x", 1]) == .array(["x", 1]))
        #expect(JSONValue.array(["x", 1]) != .array([1, "x"]))
    }

    @Test func timestampFormat() {
        #expect(Timestamp.format(seconds: 0, millis: 5) == "1970-01-01T00:00:00.005Z")
        #expect(Timestamp.format(seconds: 0, millis: 50) == "1970-01-01T00:00:00.050Z")
        #expect(Timestamp.format(seconds: 1_764_064_800, millis: 123) == "2025-11-25T10:00:00.123Z")
        #expect(Timestamp.format(seconds: 951_868_799, millis: 999) == "2000-02-29T23:59:59.999Z")
        let now = Timestamp.now()
        #expect(now.count == 24)
        #expect(now.hasPrefix("20"))
        #expect(now.hasSuffix("Z"))
    }
}

/// A disk slower than the traffic: appends wait for room (back-pressure), then the log says
/// it is unhealthy (the gateway tempfails mail) until the queue drains; memory stays bounded.
@Suite struct DecisionLogBackPressureTests {
    @Test func aFullQueueMakesAppendsWaitThenReportsUnhealthy() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let slow = TestFlag()
        let log = try DecisionLog(path: dir.file(), durability: .groupCommit(milliseconds: 1), maxPendingOctets: 2000,
                                  beforeWrite: { if slow.take() { Thread.sleep(forTimeInterval: 3) } })
        slow.set()
        log.append(record(0))
        try await Task.sleep(for: .milliseconds(100))  // the writer is now stuck in its first batch
        let started = Date()
        for i in 1...40 { log.append(record(i)) }   // ~4 KB: past the bound
        let waited = Date().timeIntervalSince(started)
        #expect(waited >= DecisionLog.maxPendingWait - 0.2, "appends did not wait: \(waited)s")
        #expect(!log.isHealthy)
        // The disk catches up: healthy again, and nothing was lost.
        try await log.flush()
        for _ in 0..<50 where !log.isHealthy { try await Task.sleep(for: .milliseconds(20)) }
        #expect(log.isHealthy)
        log.close()
        let v = try LogVerifier.verify(path: dir.file())
        #expect(v.ok, "\(v.problems)")
        #expect(v.records == 41)
    }
}

/// A flag for the writer thread, set once and taken once.
final class TestFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    func take() -> Bool { lock.lock(); defer { lock.unlock() }; let v = value; value = false; return v }
}
