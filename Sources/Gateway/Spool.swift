import Foundation
import NIOCore

/// Holds one message's content while it is checked and forwarded: in memory up to
/// `memoryLimit` octets, then in an unlinked temporary file in the spool directory, so a
/// 50 MB message costs disk, not memory, and leaves nothing behind after a crash.
public final class MessageSpool: @unchecked Sendable {
    private let directory: String
    private let memoryLimit: Int
    private var memory: ByteBuffer
    private var fd: Int32 = -1
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
    public func append(_ bytes: ByteBuffer) {
        guard failed == 0 else { return }
        size += bytes.readableBytes
        if fd < 0 {
            if memory.readableBytes + bytes.readableBytes <= memoryLimit {
                var b = bytes
                memory.writeBuffer(&b)
                return
            }
            spill()
            if failed != 0 { return }
        }
        writeFully(bytes.readableBytesView)
    }

    /// Appends one line and its CRLF.
    public func appendLine(_ line: ByteBuffer) {
        guard failed == 0 else { return }
        if fd < 0 && memory.readableBytes + line.readableBytes + 2 <= memoryLimit {
            size += line.readableBytes + 2
            var b = line
            memory.writeBuffer(&b)
            memory.writeStaticString("\r\n")
            return
        }
        append(line)
        append(MessageSpool.crlf)
    }

    private static let crlf = ByteBuffer(string: "\r\n")

    private func spill() {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/spool.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        let f = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard f >= 0 else { failed = errno; return }
        unlink(path)
        fd = f
        writeFully(memory.readableBytesView)
        memory = ByteBuffer()
    }

    private func writeFully(_ v: ByteBufferView) {
        var off = 0
        let count = v.count
        while off < count {
            let n = v.withContiguousStorageIfAvailable { p in write(fd, p.baseAddress! + off, count - off) } ?? -1
            if n < 0 {
                if errno == EINTR { continue }
                failed = errno
                return
            }
            off += n
        }
    }

    /// The chunk at `offset` (at most `max` octets), or nil at the end.
    public func chunk(at offset: Int, max: Int = 64 * 1024) -> ByteBuffer? {
        if fd < 0 {
            guard offset < memory.readableBytes else { return nil }
            return memory.getSlice(at: memory.readerIndex + offset, length: min(max, memory.readableBytes - offset))
        }
        var buf = ByteBufferAllocator().buffer(capacity: max)
        let n = buf.writeWithUnsafeMutableBytes(minimumWritableBytes: max) { p in
            let r = pread(fd, p.baseAddress!, max, off_t(offset))
            return r < 0 ? 0 : r
        }
        return n == 0 ? nil : buf
    }

    /// Reads the content back in chunks, in order.
    public func forEachChunk(_ body: (ByteBuffer) async throws -> Void) async throws {
        var offset = 0
        while let c = chunk(at: offset) {
            offset += c.readableBytes
            try await body(c)
        }
    }

    public func forEachChunkSync(_ body: (ByteBuffer) throws -> Void) rethrows {
        var offset = 0
        while let c = chunk(at: offset, max: 256 * 1024) {
            offset += c.readableBytes
            try body(c)
        }
    }
}

/// Parses header fields (RFC 5322 §2.2) from the header block, unfolding continuation lines.
public enum HeaderParser {
    public static func parse(_ block: ByteBuffer) -> [(String, String)] {
        var out: [(String, String)] = []
        let text = String(decoding: block.readableBytesView, as: UTF8.self)
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: false) {
            if line.isEmpty { break }
            if line.first == " " || line.first == "\t" {
                if !out.isEmpty { out[out.count - 1].1 += " " + line.trimmingCharacters(in: .whitespaces) }
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            out.append((name, value))
        }
        return out
    }
}
