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
