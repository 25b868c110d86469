import Foundation
import Testing
import SMTPProtocol
@testable import DecisionLog

@Suite struct SessionSearchTests {
    /// 3,000 sessions a second apart, three records each (open, verdict, close), with
    /// time-layout ids; about 600 KB, so the search has to halve the file many times.
    func write(_ path: String, cutOff: Int? = nil) throws -> [String] {
        var text = "", ids: [String] = []
        let t0 = 1_790_000_000
        var seq = 0
        for i in 0..<3000 {
            let id = SessionID.make(seconds: UInt32(t0 + i), random: UInt64(i * 7919))
            ids.append(id)
            let ts = Timestamp.format(seconds: t0 + i, millis: 5)
            let events = i == cutOff ? ["session.open", "verdict"] : ["session.open", "verdict", "session.close"]
            for e in events {
                seq += 1
                text += "{\"seq\":\(seq),\"ts\":\"\(ts)\",\"prev\":\"\(zeroHash)\",\"event\":\"\(e)\",\"session\":\"\(id)\",\"client\":\"192.0.2.\(i % 250)\"}\n"
            }
            if i == cutOff {
                seq += 1
                text += "{\"seq\":\(seq),\"ts\":\"\(ts)\",\"prev\":\"\(zeroHash)\",\"event\":\"gateway.start\"}\n"
            }
        }
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return ids
    }

    @Test func findsOneSessionByItsTimeWithoutReadingTheWholeLog() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let ids = try write(path)
        let found = try SessionSearch.records(of: ids[2000], path: path)
        #expect(found.map { $0.record["event"] as? String } == ["session.open", "verdict", "session.close"])
        #expect(found.allSatisfy { $0.record["session"] as? String == ids[2000] && $0.line.contains(ids[2000]) })
        // A transaction id names its session.
        #expect(try SessionSearch.records(of: ids[7] + ".2", path: path).count == 3)
        #expect(try SessionSearch.records(of: ids[2999], path: path).count == 3)
        // The search starts within 64 KiB before the session, not at the file's start.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        let from = try SessionSearch.start(path: path, before: Timestamp.format(seconds: 1_790_002_000 - 2, millis: 0))
        let at = try #require(try String(contentsOfFile: path, encoding: .utf8).utf8.firstRange(of: Array(ids[2000].utf8))).lowerBound
        let offset = try String(contentsOfFile: path, encoding: .utf8).utf8.distance(from: "".utf8.startIndex, to: at)
        #expect(from > size / 2 && from <= offset && offset - from < 1 << 17)
        // An id whose time has no such session: not found (near its time, nor anywhere).
        #expect(try SessionSearch.records(of: SessionID.make(seconds: 1_790_001_000, random: 1), path: path).isEmpty)
    }

    @Test func aSessionCutOffByARestartEndsThere() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let ids = try write(path, cutOff: 1500)
        let found = try SessionSearch.records(of: ids[1500], path: path)
        #expect(found.map { $0.record["event"] as? String } == ["session.open", "verdict"])
        let story = LogStory.tell(found.map(\.record), id: ids[1500])
        #expect(story.contains("  (no close record: the session was still open, or the gateway stopped or crashed during it)"))
        // An id without the time layout is looked for everywhere.
        var all = SessionSearch.Found()
        try SessionSearch.scan(path: path, from: 0, session: ids[10], into: &all)
        #expect(all.records.count == 3 && all.done)
    }

    @Test func sessionIDsCarryTheirTime() {
        let id = SessionID.make(seconds: 0x6745_c1a2, random: 0x9f)
        #expect(id == "6745c1a200000000009f")
        #expect(SessionID.seconds(of: id) == 0x6745_c1a2)
        #expect(SessionID.seconds(of: id + ".3") == 0x6745_c1a2)
        #expect(SessionID.seconds(of: "not-an-id-at-all") == nil)
        #expect(SessionID.session(of: id + ".3") == id)
    }

    /// A session whose time falls in a rotated file is found there, and one that spans a
    /// rotation is followed into the next file.
    @Test func searchesTheRotatedFiles() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let ids = try write(path)
        // Cut the file in three at line boundaries, between a session's open and its close.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n").map { $0 + "\n" }
        try lines[0..<3001].joined().write(toFile: path + ".20261201T000000Z", atomically: true, encoding: .utf8)
        try lines[3001..<6000].joined().write(toFile: path + ".20261202T000000Z", atomically: true, encoding: .utf8)
        try lines[6000...].joined().write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try SessionSearch.records(of: ids[10], path: path).count == 3)
        let spanning = try SessionSearch.records(of: ids[1000], path: path)
        #expect(spanning.map { $0.record["event"] as? String } == ["session.open", "verdict", "session.close"])
        #expect(try SessionSearch.records(of: ids[2500], path: path).count == 3)
        var f = LogFilter()
        f.session = ids[1000]
        var n = 0
        try f.scan(path: path) { _, _ in n += 1 }
        #expect(n == 3)
    }

    /// --since enters the file by binary search, --until stops the read; --client and
    /// --action are found by their octets first.
    @Test func queryByTimeWindowAndFields() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        _ = try write(path)
        var f = LogFilter()
        f.since = Timestamp.format(seconds: 1_790_002_000, millis: 0)
        f.until = Timestamp.format(seconds: 1_790_002_010, millis: 0)
        var seen: [Int] = []
        try f.scan(path: path) { r, _ in seen.append(r["seq"] as? Int ?? 0) }
        #expect(seen == Array(6001...6030))
        f = LogFilter()
        f.client = IPNetwork("192.0.2.7")
        f.event = "verdict"
        seen = []
        try f.scan(path: path) { r, _ in seen.append(r["seq"] as? Int ?? 0) }
        #expect(seen.count == 12 && seen.first == 7 * 3 + 2)
        f.client = IPNetwork("192.0.2.0/30")
        seen = []
        try f.scan(path: path) { _, _ in seen.append(0) }
        #expect(seen.count == 4 * 12)
        // A /24 is found by its first three octets' text; another network by none.
        f.event = nil
        f.client = IPNetwork("192.0.2.0/24")
        seen = []
        try f.scan(path: path) { _, _ in seen.append(0) }
        #expect(seen.count == 9000)
        f.client = IPNetwork("192.0.20.0/24")
        seen = []
        try f.scan(path: path) { _, _ in seen.append(0) }
        #expect(seen.isEmpty)
    }
}
