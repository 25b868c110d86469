import Foundation
import NIOCore
import NIOPosix
import SMTPProtocol

/// Delivers into a Maildir (tmp → fsync → rename into new → fsync new), the embedded
/// default target so the gateway can be tried without an MTA. File work runs on NIO's
/// thread pool, never on an event loop or the cooperative pool.
public struct MaildirDeliverer: Sendable {
    public let path: String
    private static let counter = Counter()

    public init(path: String) { self.path = path }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func next() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
    }

    public func deliver(prefix: String, spool: MessageSpool) async throws -> String {
        let n = MaildirDeliverer.counter.next()
        let path = self.path
        return try await NIOThreadPool.singleton.runIfActive {
            for sub in ["tmp", "new", "cur"] {
                try FileManager.default.createDirectory(atPath: "\(path)/\(sub)", withIntermediateDirectories: true)
            }
            var tv = timeval()
            gettimeofday(&tv, nil)
            var host = [CChar](repeating: 0, count: 256)
            gethostname(&host, 255)
            let hostname = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .replacingOccurrences(of: "/", with: "\\057").replacingOccurrences(of: ":", with: "\\072")
            let name = "\(tv.tv_sec).M\(tv.tv_usec)P\(getpid())Q\(n).\(hostname)"
            let tmp = "\(path)/tmp/\(name)"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            var ok = false
            defer {
                close(fd)
                if !ok { unlink(tmp) }
            }
            func put(_ bytes: UnsafeRawBufferPointer) throws {
                var off = 0
                while off < bytes.count {
                    let w = write(fd, bytes.baseAddress! + off, bytes.count - off)
                    if w < 0 {
                        if errno == EINTR { continue }
                        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                    }
                    off += w
                }
            }
            try Array(prefix.utf8).withUnsafeBytes { try put($0) }
            try spool.forEachChunkSync { chunk in
                try chunk.withUnsafeReadableBytes { try put($0) }
            }
            guard fsync(fd) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            guard rename(tmp, "\(path)/new/\(name)") == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            ok = true
            let dfd = open("\(path)/new", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dfd >= 0 { fsync(dfd); close(dfd) }
            return name
        }
    }
}

