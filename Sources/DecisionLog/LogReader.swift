import Foundation

/// A log file that cannot be opened or read, said in one line a person can act on.
public struct LogFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot read \(path): \(reason)" }

    /// The error `errno` names, for `path`.
    static func errno(_ path: String) -> LogFileError {
        LogFileError(path: path, reason: String(cString: strerror(Glibc.errno)))
    }
}

public enum LogReader {
    /// Read size: memory stays bounded by this plus the longest line, whatever the log's size.
    static let chunk = 1 << 20
    /// The most `lastLines` reads back from the end.
    static let maxTail = 64 << 20

    /// Calls `body` with each raw line (without its newline) and whether a newline ended it,
    /// in file order, reading the file in chunks; only a last line can be unterminated.
    public static func forEachRawLine(path: String, _ body: (ArraySlice<UInt8>, _ terminated: Bool) throws -> Void) throws {
        try scanLines(path: path, from: 0) { try body($0, $1); return true }
    }

    /// The same from file offset `from` (a line start), until `body` returns false.
    static func scanLines(path: String, from offset: Int, _ body: (ArraySlice<UInt8>, _ terminated: Bool) throws -> Bool) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogFileError.errno(path) }
        defer { close(fd) }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { throw LogFileError.errno(path) }
        var buffer = [UInt8](repeating: 0, count: chunk)
        var carry: [UInt8] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, chunk) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw LogFileError.errno(path)
            }
            if n == 0 { break }
            var start = 0
            while start < n, let i = buffer[start..<n].firstIndex(of: 10) {
                if carry.isEmpty {
                    guard try body(buffer[start..<i], true) else { return }
                } else {
                    carry.append(contentsOf: buffer[start..<i])
                    guard try body(carry[...], true) else { return }
                    carry.removeAll(keepingCapacity: true)
                }
                start = i + 1
            }
            carry.append(contentsOf: buffer[start..<n])
        }
        if !carry.isEmpty { _ = try body(carry[...], false) }
    }

    /// The last `count` lines (without newlines), oldest first, read backwards from the end in
    /// blocks: the time taken and memory used depend on `count`, not on the file's size (at
    /// most `maxTail` octets are read: lines past it are not shown).
    public static func lastLines(path: String, count: Int) throws -> [String] {
        guard count > 0 else { return [] }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogFileError.errno(path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LogFileError.errno(path) }
        var end = Int(st.st_size)
        var pieces: [[UInt8]] = []
        var newlines = 0, read = 0
        let block = 64 << 10
        // Enough newlines for `count` whole lines, plus the one before the first of them.
        while end > 0 && newlines <= count && read < maxTail {
            let start = max(0, end - block)
            var piece = [UInt8](repeating: 0, count: end - start)
            let n = piece.withUnsafeMutableBytes { pread(fd, $0.baseAddress, end - start, off_t(start)) }
            guard n == end - start else { throw LogFileError.errno(path) }
            newlines += piece.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
            read += n
            pieces.append(piece)
            end = start
        }
        let tail = Array(pieces.reversed().joined())
        var lines = tail.split(separator: 10, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if lines.last == "" { lines.removeLast() }
        // A first piece that does not begin the file may be a partial line.
        if end > 0 && !lines.isEmpty { lines.removeFirst() }
        return Array(lines.suffix(count))
    }

    /// The same, each line as text.
    public static func forEachLine(path: String, _ body: (Substring) throws -> Void) throws {
        try forEachRawLine(path: path) { line, _ in try body(Substring(decoding: line, as: UTF8.self)) }
    }

    /// Calls `body` with each record (parsed) and its raw line, in file order, the verdicts
    /// folded into a record first (`FoldedChecks`, each with the carrying line); lines that
    /// are not JSON objects are skipped.
    public static func forEachRecord(path: String, _ body: ([String: Any], Substring) -> Void) throws {
        try forEachLine(path: path) { line in
            guard !line.isEmpty, let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
            for r in FoldedChecks.expand(obj) { body(r, line) }
        }
    }
}
