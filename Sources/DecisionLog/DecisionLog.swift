import Foundation
import SMTPProtocol
#if canImport(Glibc)
import Glibc
#endif

public enum LogDurability: Sendable, Equatable {
    /// Every record is written and fsynced before whoever awaits it goes on.
    case fsync
    /// Records nobody waits on are written and fsynced together at least every
    /// `milliseconds`; a record someone waits on is written at once with all gathered so far.
    case groupCommit(milliseconds: Int)
}

public enum DecisionLogError: Error, CustomStringConvertible, Sendable {
    case open(String, Int32)
    case partialTail(String)
    case unreadableTail(String)
    case writeFailed(Int32)
    case headAhead(String, head: Int, last: Int)
    case closed

    public var description: String {
        switch self {
        case .open(let p, let e): return "cannot open decision log \(p): \(String(cString: strerror(e)))"
        case .partialTail(let p): return "decision log \(p) ends with a partial record that could not be kept aside; run `mailgate log verify \(p)`"
        case .unreadableTail(let p): return "decision log \(p): no valid record in its last MiB; run `mailgate log verify \(p)` and move the file aside"
        case .writeFailed(let e): return "decision log write failed: \(String(cString: strerror(e)))"
        case .headAhead(let p, let h, let l):
            return "decision log \(p): its head says record \(h) was written, but the last valid record is \(l): records are missing; run `mailgate log verify \(p)`, keep the file for the audit and move it (and its .head) aside to start a new log"
        case .closed: return "decision log is closed"
        }
    }
}

/// What opening the log found after its last valid record (a write cut short by a full
/// disk or a crash), and where those octets were kept.
public struct TailRecovery: Sendable, Equatable {
    public var tornOctets: Int
    public var keptAt: String
    public var lastGoodSeq: Int
}

/// The append-only decision log. Thread-safe; a dedicated writer thread writes and fsyncs,
/// and `appendDurably` suspends until its record is on disk. Appends wait (back-pressure)
/// while more than `maxPendingOctets` are queued, so a slow disk slows the sessions down
/// rather than growing memory.
public final class DecisionLog: @unchecked Sendable {
    public let path: String
    public let durability: LogDurability
    /// Set when opening found and kept aside a torn tail; a `log.recovered` record says so.
    public let recovered: TailRecovery?
    /// The most octets queued for the writer before appends wait for it (default 8 MiB).
    public static let defaultMaxPendingOctets = 8 << 20
    public let maxPendingOctets: Int
    /// Tests slow the writer down with this (called before each batch is written).
    let beforeWrite: (@Sendable () -> Void)?
    /// How long an append waits for room; past it the record is queued anyway and the log
    /// reports itself unhealthy (mail is tempfailed) until the queue drains to half.
    public static let maxPendingWait: TimeInterval = 2
    private var backlogged = false
    /// The open log file; replaced by the writer thread when it rotates.
    var fd: Int32
    public let rotation: LogRotation
    /// The UTC day (`YYYY-MM-DD`) the open file was started on (writer thread only).
    var fileDay: String
    private let cond = NSCondition()
    // Guarded by cond:
    private var seq: Int
    private var prevHash: String
    private var pending: [UInt8] = []
    private var pendingLastSeq = 0
    private var pendingLastHash = ""
    private var waiters: [CheckedContinuation<Void, Error>] = []
    private var writeObserver: (@Sendable (_ seconds: Double, _ octets: Int) -> Void)?
    private var failure: DecisionLogError?
    private var closing = false
    private var writerDone = false
    private var inFlight = false
    private var durable = 0
    // Writer thread only:
    var headSeq = 0
    /// Rotated files past retention, deleted once the `log.retention` record naming them
    /// (`afterSeq`) is on disk (writer thread only).
    var pendingDeletion: (files: [String], afterSeq: Int)?
    private var headHash = ""
    private var lastHeadWrite: TimeInterval = 0
    private var thread: Thread?

    public convenience init(path: String, durability: LogDurability = .groupCommit(milliseconds: 5), rotation: LogRotation = LogRotation()) throws {
        try self.init(path: path, durability: durability, maxPendingOctets: DecisionLog.defaultMaxPendingOctets, beforeWrite: nil, rotation: rotation)
    }

    init(path: String, durability: LogDurability, maxPendingOctets: Int, beforeWrite: (@Sendable () -> Void)?,
         rotation: LogRotation = LogRotation()) throws {
        self.path = path
        self.durability = durability
        self.rotation = rotation
        // The day the live file was begun: its first record's, so a restart keeps the day.
        self.fileDay = SessionSearch.firstStamp(of: path).map { String(decoding: $0.prefix(10), as: UTF8.self) }
            ?? String(Timestamp.now().prefix(10))
        self.maxPendingOctets = maxPendingOctets
        self.beforeWrite = beforeWrite
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw DecisionLogError.open(path, errno) }
        self.fd = fd
        do {
            // A file just rotated away leaves an empty one: the chain goes on from the newest rotated file.
            let before = try LogFileSet.rotated(of: path).last.map { try DecisionLog.readTail(path: $0, firstPrev: nil) }
            var tail = try DecisionLog.readTail(path: path, firstPrev: before?.hash)
            if tail.seq == 0, let b = before {
                // No record of its own yet (perhaps only a torn write): the chain is the rotated file's.
                tail.seq = b.seq
                tail.hash = b.hash
            }
            // Records the head says were written must still be there: a log cut back past
            // them is not a torn write, and starting would hide the loss.
            if let head = DecisionLog.readHead(path: path), head.seq > tail.seq || (head.seq == tail.seq && head.hash != tail.hash) {
                throw DecisionLogError.headAhead(path, head: head.seq, last: tail.seq)
            }
            self.seq = tail.seq
            self.prevHash = tail.hash
            self.durable = tail.seq
            self.recovered = try tail.tornOctets > 0 ? DecisionLog.keepAside(fd: fd, path: path, tail: tail) : nil
        } catch {
            Glibc.close(fd)
            throw error
        }
        // The writer holds the log until close(): a log dropped without close() leaks its thread
        // rather than crashing it.
        let t = Thread { self.writerLoop() }
        t.name = "decision-log"
        self.thread = t
        t.start()
        if let r = recovered {
            append(LogRecord(event: "log.recovered", session: nil, fields: [
                ("reason", "torn tail after the last valid record (a write cut short)"), ("torn_octets", .int(r.tornOctets)),
                ("kept_at", .string(r.keptAt)), ("last_good_seq", .int(r.lastGoodSeq)), ("alert", .bool(true)),
            ]))
            FileHandle.standardError.write(Data("mailgate: decision log \(path): \(r.tornOctets) octets after record \(r.lastGoodSeq) were torn; kept in \(r.keptAt), the chain goes on from record \(r.lastGoodSeq)\n".utf8))
        }
    }

    struct Tail {
        var seq: Int
        var hash: String
        /// File offset just after the last valid record.
        var goodEnd: UInt64
        var tornOctets: Int
    }

    /// The last valid record's sequence number and hash, or (0, zeros) for an empty file,
    /// and how many octets follow it (a partial or unreadable last write). Only the last MiB
    /// is read; a file with no valid record in it is refused.
    /// `firstPrev`: what the file's first record must chain to (the rotated file before it;
    /// nil: whatever it names).
    static func readTail(path: String, firstPrev: String? = Digest.zero) throws -> Tail {
        guard let fh = FileHandle(forReadingAtPath: path) else { return Tail(seq: 0, hash: Digest.zero, goodEnd: 0, tornOctets: 0) }
        defer { try? fh.close() }
        let end = try fh.seekToEnd()
        if end == 0 { return Tail(seq: 0, hash: Digest.zero, goodEnd: 0, tornOctets: 0) }
        let window: UInt64 = 1 << 20
        let start = end > window ? end - window : 0
        try fh.seek(toOffset: start)
        let data = [UInt8](try fh.readToEnd() ?? Data())
        guard let found = Self.tail(of: data, at: start, firstPrev: firstPrev) else { throw DecisionLogError.unreadableTail(path) }
        return found
    }

    /// The tail of `data`, the last octets of a file from offset `start`; nil when a window
    /// that does not begin the file holds no valid record.
    static func tail(of data: [UInt8], at start: UInt64, firstPrev: String? = Digest.zero) -> Tail? {
        // Complete lines, newest first; a line cut by the window's start is not judged.
        var lineEnd = data.lastIndex(of: 10).map { $0 + 1 } ?? 0
        while lineEnd > 0 {
            let bodyEnd = lineEnd - 1
            let lineStart = data[..<bodyEnd].lastIndex(of: 10).map { $0 + 1 } ?? 0
            if lineStart == 0 && start > 0 { break }
            let line = Array(data[lineStart..<bodyEnd])
            if let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let s = obj["seq"] as? Int,
               let prev = obj["prev"] as? String, chains(prev, to: data, before: lineStart, windowStart: start, firstPrev: firstPrev) {
                return Tail(seq: s, hash: Digest.sha256Hex(line), goodEnd: start + UInt64(lineEnd), tornOctets: data.count - lineEnd)
            }
            lineEnd = lineStart
        }
        if start == 0 { return Tail(seq: 0, hash: Digest.zero, goodEnd: 0, tornOctets: data.count) }
        return nil
    }

    /// True when `prev` is the hash of the line that ends at `end` (or there is no such line
    /// to judge: the file's first record, or a line cut by the window's start).
    static func chains(_ prev: String, to data: [UInt8], before end: Int, windowStart: UInt64, firstPrev: String? = Digest.zero) -> Bool {
        guard end > 0 else { return windowStart > 0 || firstPrev.map { prev == $0 } ?? true }
        let bodyEnd = end - 1
        let lineStart = data[..<bodyEnd].lastIndex(of: 10).map { $0 + 1 } ?? 0
        if lineStart == 0 && windowStart > 0 { return true }
        return Digest.sha256Hex(Array(data[lineStart..<bodyEnd])) == prev
    }

    /// The head file's sequence number and hash, if it can be read.
    static func readHead(path: String) -> (seq: Int, hash: String)? {
        guard let d = FileManager.default.contents(atPath: path + ".head"),
              let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
              let s = obj["seq"] as? Int, let h = obj["hash"] as? String else { return nil }
        return (s, h)
    }

    /// Copies the torn octets into `PATH.torn-TIMESTAMP` (fsynced), then cuts the log back
    /// to its last valid record. Nothing is deleted that is not kept first.
    static func keepAside(fd: Int32, path: String, tail: Tail) throws -> TailRecovery {
        guard let fh = FileHandle(forReadingAtPath: path) else { throw DecisionLogError.partialTail(path) }
        defer { try? fh.close() }
        try fh.seek(toOffset: tail.goodEnd)
        let torn = [UInt8](try fh.readToEnd() ?? Data())
        var aside = "\(path).torn-\(Timestamp.now().replacingOccurrences(of: ":", with: ""))"
        if FileManager.default.fileExists(atPath: aside) { aside += "-\(getpid())" }
        let afd = open(aside, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard afd >= 0 else { throw DecisionLogError.partialTail(path) }
        let written = torn.withUnsafeBytes { p in p.baseAddress.map { write(afd, $0, p.count) } ?? 0 }
        let synced = fsync(afd) == 0
        Glibc.close(afd)
        guard written == torn.count, synced, ftruncate(fd, off_t(tail.goodEnd)) == 0, fsync(fd) == 0 else {
            throw DecisionLogError.partialTail(path)
        }
        return TailRecovery(tornOctets: torn.count, keptAt: aside, lastGoodSeq: tail.seq)
    }

    /// Told each batch's write-and-fsync time and size (the gateway's metrics).
    public func observeWrites(_ f: @escaping @Sendable (_ seconds: Double, _ octets: Int) -> Void) {
        cond.lock(); defer { cond.unlock() }
        writeObserver = f
    }

    /// Octets queued for the writer (a metric).
    public var pendingOctets: Int {
        cond.lock(); defer { cond.unlock() }
        return pending.count
    }

    /// The last record known to be on disk: what a sink may ship (one it shipped past this
    /// could outlive the local file's copy through a power loss).
    public var durableSeq: Int {
        cond.lock(); defer { cond.unlock() }
        return durable
    }

    /// True while records can be written. A gateway that sees false tempfails mail.
    public var isHealthy: Bool {
        cond.lock(); defer { cond.unlock() }
        return failure == nil && !closing && !backlogged
    }

    /// Waits (the caller holds the lock) while the queue is full, up to `maxPendingWait`;
    /// then the log is backlogged (unhealthy: new mail is tempfailed) and records queue on
    /// up to four times the bound, past which every append waits for the disk: memory stays
    /// bounded, and the whole gateway slows to the disk's pace.
    private func waitForRoomLocked() {
        guard pending.count >= maxPendingOctets else { return }
        if backlogged {
            while pending.count >= 4 * maxPendingOctets && failure == nil && !closing { cond.wait() }
            return
        }
        let deadline = Date(timeIntervalSinceNow: Self.maxPendingWait)
        while pending.count >= maxPendingOctets && failure == nil && !closing {
            if !cond.wait(until: deadline) {
                backlogged = true
                return
            }
        }
    }

    /// Numbers, chains and queues a record; returns at once. Returns the sequence number.
    @discardableResult
    public func append(_ record: LogRecord) -> Int {
        let body = DecisionLog.body(record)
        cond.lock()
        defer { cond.unlock() }
        waitForRoomLocked()
        return enqueueLocked(body)
    }

    /// The part of a record after `prev`, serialised outside the lock.
    static func body(_ record: LogRecord) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(384)
        out.append(contentsOf: ",\"event\":".utf8)
        JSONValue.writeString(record.event, into: &out)
        if let s = record.session {
            out.append(contentsOf: ",\"session\":".utf8)
            JSONValue.writeString(s, into: &out)
        }
        for (k, v) in record.fields {
            out.append(UInt8(ascii: ","))
            JSONValue.writeString(k, into: &out)
            out.append(UInt8(ascii: ":"))
            v.write(into: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Appends and suspends until the record is durable (per the log's durability).
    public func appendDurably(_ record: LogRecord) async throws {
        let body = DecisionLog.body(record)
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            cond.lock()
            if let f = failure { cond.unlock(); c.resume(throwing: f); return }
            if closing { cond.unlock(); c.resume(throwing: DecisionLogError.closed); return }
            waitForRoomLocked()
            // The wait gave up the lock: the log may have failed or closed meanwhile.
            if let f = failure { cond.unlock(); c.resume(throwing: f); return }
            if closing { cond.unlock(); c.resume(throwing: DecisionLogError.closed); return }
            enqueueLocked(body)
            waiters.append(c)
            cond.signal()
            cond.unlock()
        }
    }

    /// Waits until everything appended so far is durable.
    public func flush() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            cond.lock()
            if let f = failure { cond.unlock(); c.resume(throwing: f); return }
            if pending.isEmpty && !inFlight { cond.unlock(); c.resume(); return }
            waiters.append(c)
            cond.signal()
            cond.unlock()
        }
    }

    /// Queues a record without waiting for room: for the writer thread's own records
    /// (waiting there would wait on itself). Returns its sequence number, -1 if not queued.
    @discardableResult
    func appendFromWriter(_ record: LogRecord) -> Int {
        let body = DecisionLog.body(record)
        cond.lock()
        defer { cond.unlock() }
        return enqueueLocked(body)
    }

    /// Numbers and chains a serialised body; the caller holds the lock.
    @discardableResult
    private func enqueueLocked(_ body: [UInt8]) -> Int {
        if failure != nil || closing { return -1 }
        seq += 1
        var line: [UInt8] = []
        line.reserveCapacity(body.count + 128)
        line.append(contentsOf: "{\"seq\":".utf8)
        line.append(contentsOf: String(seq).utf8)
        line.append(contentsOf: ",\"ts\":\"".utf8)
        line.append(contentsOf: Timestamp.now().utf8)
        line.append(contentsOf: "\",\"prev\":\"".utf8)
        line.append(contentsOf: prevHash.utf8)
        line.append(UInt8(ascii: "\""))
        line.append(contentsOf: body)
        prevHash = Digest.sha256Hex(line)
        line.append(10)
        let wasEmpty = pending.isEmpty
        pending.append(contentsOf: line)
        pendingLastSeq = seq
        pendingLastHash = prevHash
        if wasEmpty { cond.signal() }
        return seq
    }

    private func writerLoop() {
        let delay: Double
        switch durability {
        case .fsync: delay = 0
        case .groupCommit(let ms): delay = Double(ms) / 1000
        }
        while true {
            cond.lock()
            while pending.isEmpty && waiters.isEmpty && !closing { cond.wait() }
            if pending.isEmpty && closing {
                if headSeq > 0 { writeHead(seq: headSeq, hash: headHash) }
                writerDone = true
                let ws = waiters; waiters = []
                cond.unlock()
                ws.forEach { $0.resume() }
                return
            }
            if delay > 0 && !closing && waiters.isEmpty {
                // Group commit: records nobody waits on gather for up to `delay`; a record
                // someone waits on (a transaction's outcome) is written at once, together
                // with everything gathered so far. While one fsync runs, the next batch
                // gathers by itself.
                let deadline = Date(timeIntervalSinceNow: delay)
                while waiters.isEmpty && !closing && cond.wait(until: deadline) {}
            }
            let batch = pending
            pending = []
            pending.reserveCapacity(batch.count)
            let ws = waiters
            waiters = []
            let lastSeq = pendingLastSeq, lastHash = pendingLastHash
            let closingNow = closing
            let observe = writeObserver
            inFlight = true
            // Room again: wake appenders waiting for it.
            cond.broadcast()
            cond.unlock()

            var err: Int32 = 0
            if !batch.isEmpty {
                beforeWrite?()
                let began = ContinuousClock.now
                err = writeAll(batch)
                if err == 0 && fdatasync(fd) != 0 { err = errno }
                observe?((ContinuousClock.now - began).inSeconds, batch.count)
                // The head file may lag the log (verify allows that) but not lead it: it is
                // written after the fsync, at most once a second, and on close.
                if err == 0 {
                    headSeq = lastSeq
                    headHash = lastHash
                    let now = ProcessInfo.processInfo.systemUptime
                    if now - lastHeadWrite >= 1 || closingNow {
                        writeHead(seq: lastSeq, hash: lastHash)
                        lastHeadWrite = now
                    }
                    // Not while closing: its own records could no longer be written.
                    if !closingNow { rotateIfDue() }
                }
            }
            cond.lock()
            inFlight = false
            if err == 0 && !batch.isEmpty { durable = lastSeq }
            // Healthy again only once this batch is on disk and the queue is below half.
            if backlogged && err == 0 && pending.count < maxPendingOctets / 2 { backlogged = false }
            cond.broadcast()
            cond.unlock()
            if err != 0 {
                cond.lock()
                failure = .writeFailed(err)
                let more = waiters; waiters = []
                pending = []
                cond.broadcast()
                cond.unlock()
                FileHandle.standardError.write(Data("mailgate: \(DecisionLogError.writeFailed(err)); refusing mail until restart\n".utf8))
                (ws + more).forEach { $0.resume(throwing: DecisionLogError.writeFailed(err)) }
            } else {
                ws.forEach { $0.resume() }
            }
        }
    }

    private func writeAll(_ bytes: [UInt8]) -> Int32 {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { p in p.baseAddress.map { write(fd, $0 + off, p.count - off) } ?? 0 }
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            off += n
        }
        return 0
    }

    /// Atomically and durably: a temporary file, fsynced, renamed over the head, and the
    /// directory fsynced. A failure leaves the old head, which may lag but never leads.
    func writeHead(seq: Int, hash: String) {
        let tmp = path + ".head.tmp"
        let text = Array("{\"seq\":\(seq),\"hash\":\"\(hash)\"}\n".utf8)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return }
        let n = text.withUnsafeBytes { p in p.baseAddress.map { write(fd, $0, p.count) } ?? 0 }
        let synced = fsync(fd) == 0
        Glibc.close(fd)
        guard n == text.count, synced, rename(tmp, path + ".head") == 0 else { unlink(tmp); return }
        syncDirectory()
    }

    /// Writes out what is queued and closes the file.
    public func close() {
        cond.lock()
        if closing { cond.unlock(); return }
        closing = true
        cond.broadcast()
        while !writerDone { cond.unlock(); Thread.sleep(forTimeInterval: 0.001); cond.lock() }
        cond.unlock()
        Glibc.close(fd)
    }
}

/// RFC 3339 timestamps in UTC with milliseconds, without Foundation's formatters.
public enum Timestamp {
    public static func now() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return format(seconds: Int(tv.tv_sec), millis: Int(tv.tv_usec) / 1000)
    }

    public static func format(seconds: Int, millis: Int) -> String {
        var t = time_t(seconds)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func p2(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(tmv.tm_year + 1900)-\(p2(tmv.tm_mon + 1))-\(p2(tmv.tm_mday))T\(p2(tmv.tm_hour)):\(p2(tmv.tm_min)):\(p2(tmv.tm_sec)).\(ms)Z"
    }
}
