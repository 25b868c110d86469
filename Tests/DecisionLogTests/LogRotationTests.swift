import Foundation
import Testing
@testable import DecisionLog

/// Rotation by size and day, a chain across files, retention that logs its deletions.
@Suite struct LogRotationTests {
    /// 60 records in batches of 6, rotating past 1,500 octets: several files.
    func rotatedSet(_ dir: TempDir, rotation: LogRotation = LogRotation(maxOctets: 1500)) async throws -> String {
        let path = dir.file()
        let log = try DecisionLog(path: path, durability: .groupCommit(milliseconds: 1), rotation: rotation)
        for batch in 0..<10 {
            for i in 1...6 { log.append(record(batch * 6 + i)) }
            try await log.flush()
        }
        log.close()
        return path
    }

    @Test func aRotatedSetIsOneChain() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = try await rotatedSet(dir)
        let rotated = LogFileSet.rotated(of: path)
        #expect(rotated.count >= 3)
        let v = try LogVerifier.verifySet(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.files == rotated.count + 1)
        // 60 records and one log.rotated per rotation.
        #expect(v.records == 60 + rotated.count && v.lastSeq == v.records)
        // Each later file's first record chains to the file before's last.
        for (a, b) in zip(rotated, rotated.dropFirst() + [path]) {
            let last = try #require(try lines(a).filter { !$0.isEmpty }.last)
            let first = try parse(try #require(try lines(b).first))
            #expect(first["prev"] as? String == Digest.sha256Hex(Array(last.utf8)))
        }
        let notes = try lines(path).compactMap { try? parse($0) }.filter { $0["event"] as? String == "log.rotated" }
        #expect(notes.first?["previous_file"] as? String == rotated.last && notes.first?["reason"] as? String == "size")
        // Each file alone does not chain from zero, except the first.
        #expect(try LogVerifier.verify(path: rotated[0]).problems.allSatisfy { $0.contains(".head is missing") })
        #expect(!(try LogVerifier.verify(path: rotated[1]).ok))
    }

    @Test func aMissingReorderedOrCutFileIsFound() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = try await rotatedSet(dir)
        let rotated = LogFileSet.rotated(of: path)
        let middle = rotated[1]
        let kept = try Data(contentsOf: URL(fileURLWithPath: middle))
        try FileManager.default.removeItem(atPath: middle)
        let gone = try LogVerifier.verifySet(path: path)
        #expect(gone.problems.count == 1 && gone.problems[0].hasPrefix("\(rotated[2]):1: record "))
        #expect(gone.problems[0].hasSuffix("does not continue \(rotated[0]), whose last record is \(try lastSeq(rotated[0])): a file between them is missing, or the files are out of order or cut short"))
        // Cut short by its last record.
        var cut = String(decoding: kept, as: UTF8.self).split(separator: "\n").map(String.init)
        cut.removeLast()
        try Data((cut.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: middle))
        #expect(try LogVerifier.verifySet(path: path).problems.first?.hasPrefix("\(rotated[2]):1: record ") == true)
        // Two files' contents swapped.
        try kept.write(to: URL(fileURLWithPath: middle))
        #expect(try LogVerifier.verifySet(path: path).ok)
        let third = try Data(contentsOf: URL(fileURLWithPath: rotated[2]))
        try third.write(to: URL(fileURLWithPath: middle))
        try kept.write(to: URL(fileURLWithPath: rotated[2]))
        #expect(try LogVerifier.verifySet(path: path).problems.first?.hasPrefix("\(middle):1: record ") == true)
        // The oldest file removed, with no retention record to say so.
        try third.write(to: URL(fileURLWithPath: rotated[2]))
        try kept.write(to: URL(fileURLWithPath: middle))
        try FileManager.default.removeItem(atPath: rotated[0])
        let start = try LogVerifier.verifySet(path: path)
        #expect(start.problems == ["\(middle):1: the set begins at record \(try lastSeq(rotated[0], from: kept)), and no log.retention record says the records before it were deleted: a file is missing from the start"])
    }

    func lastSeq(_ path: String) throws -> Int {
        let last = try lines(path).filter { !$0.isEmpty }.last ?? ""
        return try parse(last)["seq"] as? Int ?? -1
    }

    /// The first record's seq in `data` (the file that now begins the set).
    func lastSeq(_ unused: String, from data: Data) throws -> Int {
        let first = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        return try parse(first)["seq"] as? Int ?? -1
    }

    @Test func reopeningAfterARotationGoesOnFromTheRotatedFile() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        try await writeLog(path, 1...5)
        // As a rotation leaves it: the file renamed away, an empty one in its place.
        let rotated = path + ".20261203T100000Z"
        #expect(rename(path, rotated) == 0)
        FileManager.default.createFile(atPath: path, contents: Data())
        try await writeLog(path, 6...7)
        let v = try LogVerifier.verifySet(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.records == 7 && v.files == 2)
    }

    @Test func retentionDeletesOldFilesAndSaysSo() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = try await rotatedSet(dir)
        let before = LogFileSet.rotated(of: path)
        // The two oldest files were last written three days ago.
        var old = timeval(tv_sec: Int(Date().timeIntervalSince1970) - 3 * 86400, tv_usec: 0)
        for f in before.prefix(2) { _ = withUnsafePointer(to: &old) { p in [p.pointee, p.pointee].withUnsafeBufferPointer { utimes(f, $0.baseAddress) } } }
        let log = try DecisionLog(path: path, durability: .groupCommit(milliseconds: 1), rotation: LogRotation(maxOctets: 1500, retentionDays: 2))
        for i in 100...120 { log.append(record(i)) }
        try await log.flush()
        try await log.flush()
        log.close()
        let after = LogFileSet.rotated(of: path)
        #expect(!after.contains(before[0]) && !after.contains(before[1]) && after.contains(before[2]))
        let all = try (after + [path]).flatMap { try lines($0) }.compactMap { try? parse($0) }
        let retention = try #require(all.first { $0["event"] as? String == "log.retention" })
        #expect(retention["deleted"] as? [String] == Array(before.prefix(2)))
        #expect(retention["retention_days"] as? Int == 2)
        let v = try LogVerifier.verifySet(path: path)
        #expect(v.ok, "\(v.problems)")
        #expect(v.notes.contains { $0.contains("records up to \(retention["through_seq"] as? Int ?? -1) were deleted under retention") }, "\(v.notes)")
    }

    @Test func rotatedNamesSortByStampThenCounter() {
        #expect(LogFileSet.parse("20261203T172600Z")! == ("20261203T172600Z", 1))
        #expect(LogFileSet.parse("20261203T172600Z-12")! == ("20261203T172600Z", 12))
        for bad in ["head", "torn-20261203T172600Z", "20261203T172600Z-1", "20261203X172600Z", "20261203T172600Z-x", "2026120T172600Z"] {
            #expect(LogFileSet.parse(bad) == nil, "\(bad)")
        }
    }

    /// A clock stepped back still names the next file after the newest one.
    @Test func rotatedNamesStayInOrderWhenTheClockStepsBack() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        FileManager.default.createFile(atPath: path + ".20991231T000000Z", contents: Data())
        #expect(LogFileSet.nextName(for: path) == path + ".20991231T000000Z-2")
        FileManager.default.createFile(atPath: path + ".20991231T000000Z-2", contents: Data())
        #expect(LogFileSet.nextName(for: path) == path + ".20991231T000000Z-3")
        #expect(LogFileSet.rotated(of: path).map { URL(fileURLWithPath: $0).lastPathComponent } == ["decisions.log.20991231T000000Z", "decisions.log.20991231T000000Z-2"])
    }
}
