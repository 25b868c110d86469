import Foundation

/// A log file that cannot be opened or read, said in one line a person can act on.
public struct LogFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot read \(path): \(reason)" }
}

public enum LogReader {
    /// Read size: memory stays bounded by this plus the longest line, whatever the log's size.
    static let chunk = 1 << 20

    /// Calls `body` with each raw line (without its newline), in file order, reading the file
    /// in chunks. A last line without a newline is passed too.
    public static func forEachLine(path: String, _ body: (Substring) throws -> Void) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw LogFileError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: chunk)
        var carry: [UInt8] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, chunk) }
            if n < 0 {
                if errno == EINTR { continue }
                throw LogFileError(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            var start = 0
            for i in 0..<n where buffer[i] == 10 {
                if carry.isEmpty {
                    try body(Substring(decoding: buffer[start..<i], as: UTF8.self))
                } else {
                    carry.append(contentsOf: buffer[start..<i])
                    try body(Substring(decoding: carry, as: UTF8.self))
                    carry.removeAll(keepingCapacity: true)
                }
                start = i + 1
            }
            carry.append(contentsOf: buffer[start..<n])
        }
        if !carry.isEmpty { try body(Substring(decoding: carry, as: UTF8.self)) }
    }

    /// Calls `body` with each record (parsed) and its raw line, in file order; lines that
    /// are not JSON objects are skipped.
    public static func forEachRecord(path: String, _ body: ([String: Any], Substring) -> Void) throws {
        try forEachLine(path: path) { line in
            guard !line.isEmpty, let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
            body(obj, line)
        }
    }
}
