import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads a log's records in order from a sequence number on, across the files rotated from
/// it, and follows the live file as it grows and is rotated (as `tail -F` does): what the
/// PostgreSQL sink ships. Only whole lines are returned; memory is bounded by the batch the
/// caller asks for plus the longest line.
public final class LogFollower {
    /// One record as it is in the file (without its newline) and its sequence number.
    public struct Line: Sendable {
        public let seq: Int
        public let bytes: [UInt8]
    }

    public let path: String
    /// The last sequence number returned (or skipped to).
    public private(set) var lastSeq: Int
    private var fd: Int32 = -1
    private var inode: UInt = 0
    private var offset = 0
    /// Read but not yet returned: `buffer[head...]`; no newline in `buffer[head..<scanned]`.
    private var buffer: [UInt8] = []
    private var head = 0
    private var scanned = 0
    /// Inside an over-long line: octets are dropped up to its newline.
    private var skipping = false
    /// The longest line returned; a longer one (not a record the gateway writes) is skipped.
    public static let maxLine = 16 << 20

    /// Positions after record `after` (0: from the oldest record there is).
    public init(path: String, after: Int) throws {
        self.path = path
        self.lastSeq = after
        // A rotation between choosing a file by name and opening it would open another: the
        // file opened must still begin where the chosen one did.
        for attempt in 0..<5 {
            let files = LogFileSet.rotated(of: path) + [path]
            let firsts = files.map { Self.firstSeq(of: $0) }
            // The newest file that begins at or before the next record; else the oldest there is.
            let chosen = firsts.lastIndex { $0.map { $0 <= after + 1 } ?? false } ?? 0
            try open(files[chosen], at: 0)
            if Self.firstSeq(fd: fd) == firsts[chosen] || attempt == 4 { break }
        }
        offset = try SessionSearch.start(fd: fd, path: path) { head in Self.seq(of: head).map { $0 <= after } }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// The next whole lines with sequence numbers up to `upTo` (what is durable), at most
    /// `maxLines` of them and about `maxOctets`; empty when there is nothing new yet.
    /// Lines before the position (a binary search lands within 64 KiB of it) are skipped.
    public func read(upTo: Int, maxLines: Int = 1000, maxOctets: Int = 1 << 20) throws -> [Line] {
        var out: [Line] = []
        var octets = 0
        while out.count < maxLines && octets < maxOctets {
            guard let line = try nextLine() else { break }
            guard let s = Self.seq(of: line[...]) else { consume(line.count); continue }
            if s <= lastSeq { consume(line.count); continue }
            if s > upTo { break }
            consume(line.count)
            lastSeq = s
            octets += line.count
            out.append(Line(seq: s, bytes: line))
        }
        return out
    }

    /// Takes a line (and its newline) off the buffer.
    private func consume(_ count: Int) {
        head = min(buffer.count, head + count + 1)
    }

    /// The next whole line in the buffer, reading (and moving to the next file) as needed.
    private func nextLine() throws -> [UInt8]? {
        while true {
            if let nl = buffer[max(head, scanned)...].firstIndex(of: 10) {
                scanned = 0
                guard nl - head <= Self.maxLine else { head = nl + 1; continue }
                return Array(buffer[head..<nl])
            }
            scanned = buffer.count
            if buffer.count - head > Self.maxLine {
                // No record is this long: drop what was read, and the rest up to the next newline.
                head = buffer.count
                skipping = true
            }
            if try fill() { continue }
            // At the end of this file: go on in the next one once this one is rotated away.
            guard try advanceIfRotated() else { return nil }
        }
    }

    /// Reads more of the current file; false at its end.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw LogFileError.errno(path)
            }
            if n == 0 { return false }
            offset += n
            if head > 0 {
                buffer.removeFirst(head)
                scanned = max(0, scanned - head)
                head = 0
            }
            if skipping {
                guard let nl = chunk[..<n].firstIndex(of: 10) else { return true }
                skipping = false
                buffer.append(contentsOf: chunk[(nl + 1)..<n])
                scanned = 0
                return true
            }
            buffer.append(contentsOf: chunk[..<n])
            return true
        }
    }

    /// When the live path is no longer the file being read (it was rotated), and that file
    /// has nothing more, moves to the file holding the next record. True when it moved.
    private func advanceIfRotated() throws -> Bool {
        var st = stat()
        guard stat(path, &st) == 0, UInt(st.st_ino) != inode else { return false }
        // Anything written to the old file before its rename.
        if try fill() { return true }
        // A partial line at the end of a rotated file will never be completed. The next file
        // is one that begins past what was read, other than this one.
        let current = inode
        for f in LogFileSet.rotated(of: path) where (Self.firstSeq(of: f) ?? 0) > lastSeq && Self.inode(of: f) != current {
            try open(f, at: 0)
            return true
        }
        try open(path, at: 0)
        return true
    }

    static func inode(of path: String) -> UInt? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt(st.st_ino) : nil
    }

    private func open(_ file: String, at start: Int) throws {
        let nfd = Glibc.open(file, O_RDONLY | O_CLOEXEC)
        guard nfd >= 0 else { throw LogFileError.errno(file) }
        var st = stat()
        guard fstat(nfd, &st) == 0 else { Glibc.close(nfd); throw LogFileError.errno(file) }
        if fd >= 0 { Glibc.close(fd) }
        fd = nfd
        inode = UInt(st.st_ino)
        offset = start
        buffer.removeAll()
        head = 0
        scanned = 0
        skipping = false
    }

    /// The sequence number a record's line begins with (`{"seq":N,`).
    public static func seq(of line: ArraySlice<UInt8>) -> Int? {
        let key = seqKey
        guard line.count > key.count, line.prefix(key.count).elementsEqual(key) else { return nil }
        var n = 0
        var digits = 0
        for c in line.dropFirst(key.count) {
            guard c >= 48 && c <= 57 else { break }
            guard digits < 18 else { return nil }
            n = n * 10 + Int(c - 48)
            digits += 1
        }
        return digits > 0 ? n : nil
    }

    static let seqKey = Array("{\"seq\":".utf8)

    /// The sequence number of a file's first record.
    static func firstSeq(of path: String) -> Int? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        return firstSeq(fd: fd)
    }

    static func firstSeq(fd: Int32) -> Int? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 32, 0) }
        return n > 0 ? seq(of: buf[..<n]) : nil
    }
}
