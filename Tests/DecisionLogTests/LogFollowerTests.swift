import Foundation
import Testing
@testable import DecisionLog

/// What the PostgreSQL sink reads: records in order from a sequence number on, across
/// rotated files, following the live file as it grows and is rotated.
@Suite struct LogFollowerTests {
    @Test func followsFromAnyRecordAcrossRotationsAndAsTheLogGrows() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let log = try DecisionLog(path: path, durability: .groupCommit(milliseconds: 1), rotation: LogRotation(maxOctets: 1500))
        for batch in 0..<10 {
            for i in 1...6 { log.append(record(batch * 6 + i)) }
            try await log.flush()
        }
        // A rotation's own record is written with the next batch.
        try await log.flush()
        #expect(LogFileSet.rotated(of: path).count >= 3)
        let total = log.durableSeq
        var all: [[UInt8]] = []
        for f in LogFileSet.rotated(of: path) + [path] {
            try LogReader.forEachRawLine(path: f) { l, _ in all.append(Array(l)) }
        }
        #expect(all.count == total)
        // From the start, from the middle of a rotated file, from the live file's last.
        for after in [0, 17, total - 1, total] {
            let f = try LogFollower(path: path, after: after)
            var got: [LogFollower.Line] = []
            while case let batch = try f.read(upTo: total, maxLines: 7), !batch.isEmpty { got += batch }
            #expect(got.map(\.seq) == Array(stride(from: after + 1, through: total, by: 1)))
            #expect(got.map(\.bytes) == Array(all.dropFirst(after)))
        }
        // Following: new records (and the rotations they cause) appear; nothing past `upTo`.
        let f = try LogFollower(path: path, after: total)
        #expect(try f.read(upTo: Int.max).isEmpty)
        for i in 1...30 { log.append(record(100 + i)) }
        try await log.flush()
        try await log.flush()
        let now = log.durableSeq
        #expect(try f.read(upTo: total + 5).map(\.seq) == Array((total + 1)...(total + 5)))
        var rest: [Int] = []
        while case let batch = try f.read(upTo: now, maxLines: 4), !batch.isEmpty { rest += batch.map(\.seq) }
        #expect(rest == Array((total + 6)...now))
        log.close()
    }

    @Test func aPartialLastLineWaitsForItsNewline() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let whole = "{\"seq\":1,\"ts\":\"2026-12-04T00:00:00.000Z\",\"prev\":\"0\",\"event\":\"a\"}\n"
        let part = "{\"seq\":2,\"ts\":\"2026-12-04T00:00:00.000Z\""
        try Data((whole + part).utf8).write(to: URL(fileURLWithPath: path))
        let f = try LogFollower(path: path, after: 0)
        #expect(try f.read(upTo: 10).map(\.seq) == [1])
        #expect(try f.read(upTo: 10).isEmpty)
        let h = try #require(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile()
        h.write(Data(",\"prev\":\"1\",\"event\":\"b\"}\n".utf8))
        try h.close()
        let next = try f.read(upTo: 10)
        #expect(next.map(\.seq) == [2])
        #expect(next.first.map { String(decoding: $0.bytes, as: UTF8.self) } == part + ",\"prev\":\"1\",\"event\":\"b\"}")
        #expect(LogFollower.seq(of: Array("{\"seq\":99999999999999999999,".utf8)[...]) == nil)
    }

    @Test func anOverLongLineIsSkippedAndAPartialRotatedFileDoesNotHoldItUp() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        func rec(_ n: Int) -> String { "{\"seq\":\(n),\"ts\":\"2026-12-04T00:00:00.000Z\",\"prev\":\"0\",\"event\":\"e\"}\n" }
        // A rotated file that is one partial line, then the live file.
        try Data("{\"seq\":5,\"ts\":\"2026".utf8).write(to: URL(fileURLWithPath: path + ".20261203T000000Z"))
        var live = Data(rec(6).utf8)
        live.append(Data("{\"seq\":7,".utf8) + Data(repeating: UInt8(ascii: "x"), count: LogFollower.maxLine + 10) + Data("\n".utf8))
        live.append(Data(rec(8).utf8))
        try live.write(to: URL(fileURLWithPath: path))
        let f = try LogFollower(path: path, after: 4)
        var got: [Int] = []
        while case let batch = try f.read(upTo: 100), !batch.isEmpty { got += batch.map(\.seq) }
        #expect(got == [6, 8])
    }
}
