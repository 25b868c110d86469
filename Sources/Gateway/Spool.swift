import Foundation
import NIOCore
import NIOConcurrencyHelpers

/// A spool file could not be read back: the message must be tempfailed, never sent cut short.
public struct SpoolReadError: Error, CustomStringConvertible, Sendable {
    public var errno: Int32
    public var offset: Int
    public var description: String { "spool read failed at octet \(offset): \(String(cString: strerror(errno)))" }
}

/// Holds one message's content while it is checked and forwarded: in memory up to
/// `memoryLimit` octets, then in an unlinked temporary file in the spool directory, so a
/// 50 MB message costs disk, not memory, and leaves nothing behind after a crash. Once in
/// a file, content is gathered and written `writeOctets` at a time.
public final class MessageSpool: @unchecked Sendable {
    private let directory: String
    private let memoryLimit: Int
    private var memory: ByteBuffer
    private var fd: Int32 = -1
    /// Content for the file not yet written (at most `writeOctets` and one append).
    private var unwritten = ByteBuffer()
    static let writeOctets = 64 * 1024
    public private(set) var size = 0
    public private(set) var failed: Int32 = 0

    public init(directory: String, memoryLimit: Int) {
        self.directory = directory
        self.memoryLimit = memoryLimit
        self.memory = ByteBufferAllocator().buffer(capacity: min(memoryLimit, 16 * 1024))
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Appends content. A write error is remembered in `failed`; the message must then be
    /// refused with a 4xx.
    public func append(_ bytes: ByteBuffer) { add(bytes, lineEnd: false) }

    /// Appends one line and its CRLF.
    public func appendLine(_ line: ByteBuffer) { add(line, lineEnd: true) }

    /// Both appends in one pass (each access to a property of this class is checked for
    /// exclusivity at run time: two appends per line were a fifth of a large message's CPU).
    private func add(_ bytes: ByteBuffer, lineEnd: Bool) {
        guard failed == 0 else { return }
        let n = bytes.readableBytes + (lineEnd ? 2 : 0)
        size += n
        if fd < 0 {
            if memory.readableBytes + n <= memoryLimit {
                var b = bytes
                memory.writeBuffer(&b)
                if lineEnd { memory.writeStaticString("\r\n") }
                return
            }
            spill()
            if failed != 0 { return }
        }
        var b = bytes
        unwritten.writeBuffer(&b)
        if lineEnd { unwritten.writeStaticString("\r\n") }
        if unwritten.readableBytes >= Self.writeOctets { writeUnwritten() }
    }

    /// Writes what is gathered, at the end of the message: a write error shows in `failed`.
    public func flush() { writeUnwritten() }

    private func writeUnwritten() {
        guard unwritten.readableBytes > 0 else { return }
        writeFully(unwritten.readableBytesView)
        unwritten.clear()
    }

    private func spill() {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/spool.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        let f = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard f >= 0 else { failed = errno; return }
        unlink(path)
        fd = f
        writeFully(memory.readableBytesView)
        memory = ByteBuffer()
        unwritten = ByteBufferAllocator().buffer(capacity: Self.writeOctets + 1024)
    }

    private func writeFully(_ v: ByteBufferView) {
        var off = 0
        let count = v.count
        while off < count {
            let n = v.withContiguousStorageIfAvailable { p -> Int in
                guard let base = p.baseAddress else { return 0 }
                return write(fd, base + off, count - off)
            } ?? -1
            if n < 0 {
                if errno == EINTR { continue }
                failed = errno
                return
            }
            off += n
        }
    }

    /// Tests make reads of spilled spools fail at an offset (the errno to give, or nil).
    static let readFault = NIOLockedValueBox<(@Sendable (Int) -> Int32?)?>(nil)

    /// The chunk at `offset` (at most `max` octets), or nil at the end. A read error, or a
    /// file shorter than what was written, throws: it is never taken as the end.
    public func chunk(at offset: Int, max: Int = 64 * 1024) throws(SpoolReadError) -> ByteBuffer? {
        if fd < 0 {
            guard offset < memory.readableBytes else { return nil }
            return memory.getSlice(at: memory.readerIndex + offset, length: min(max, memory.readableBytes - offset))
        }
        guard offset < size else { return nil }
        writeUnwritten()
        if failed != 0 { throw SpoolReadError(errno: failed, offset: offset) }
        if let fault = MessageSpool.readFault.withLockedValue({ $0 }), let e = fault(offset) {
            throw SpoolReadError(errno: e, offset: offset)
        }
        let want = min(max, size - offset)
        var buf = ByteBufferAllocator().buffer(capacity: want)
        var err: Int32 = 0
        let n = buf.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { p in
            guard let base = p.baseAddress else { return 0 }
            while true {
                let r = pread(fd, base, want, off_t(offset))
                if r < 0 && errno == EINTR { continue }
                if r < 0 { err = errno; return 0 }
                return r
            }
        }
        if err != 0 { throw SpoolReadError(errno: err, offset: offset) }
        if n == 0 { throw SpoolReadError(errno: EIO, offset: offset) }
        return buf
    }

    /// Reads the content back in chunks, in order.
    public func forEachChunk(_ body: (ByteBuffer) async throws -> Void) async throws {
        var offset = 0
        while let c = try chunk(at: offset) {
            offset += c.readableBytes
            try await body(c)
        }
    }

    public func forEachChunkSync(_ body: (ByteBuffer) throws -> Void) throws {
        var offset = 0
        while let c = try chunk(at: offset, max: 256 * 1024) {
            offset += c.readableBytes
            try body(c)
        }
    }
}
