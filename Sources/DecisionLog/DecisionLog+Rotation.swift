import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension DecisionLog {
    /// Writer thread, after a batch is durable: when the file is due (by size or day), it is
    /// renamed to `PATH.STAMP` and a new file is opened at `PATH`. The chain goes on: the new
    /// file's first record's `prev` is the hash of the old file's last. A `log.rotated` record
    /// names the file, and rotated files past `retentionDays` are deleted and logged.
    func rotateIfDue() {
        guard rotation.enabled else { return }
        completeDeletion()
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return }
        let today = String(Timestamp.now().prefix(10))
        let bySize = rotation.maxOctets > 0 && Int(st.st_size) >= rotation.maxOctets
        guard bySize || (rotation.daily && today != fileDay) else { return }
        let name = LogFileSet.nextName(for: path)
        guard rename(path, name) == 0 else {
            FileHandle.standardError.write(Data("mailgate: cannot rotate \(path) to \(name): \(String(cString: strerror(errno))); writing on\n".utf8))
            return
        }
        let nfd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard nfd >= 0 else {
            // Without a new file, keep the old one under its name.
            _ = rename(name, path)
            return
        }
        syncDirectory()
        Glibc.close(fd)
        fd = nfd
        fileDay = today
        appendFromWriter(LogRecord(event: "log.rotated", session: nil, fields: [
            ("previous_file", .string(name)), ("previous_last_seq", .int(headSeq)), ("reason", .string(bySize ? "size" : "day")),
        ]))
        applyRetention()
    }

    /// Rotated files last written more than `retentionDays` ago, oldest first: a
    /// `log.retention` record names them and the last record they hold, and they are deleted
    /// once that record is on disk (so no deletion goes unrecorded, even through a crash).
    func applyRetention() {
        guard rotation.retentionDays > 0, pendingDeletion == nil else { return }
        let cutoff = Date().addingTimeInterval(-Double(rotation.retentionDays) * 86400)
        var expired: [String] = []
        var through = 0
        for f in LogFileSet.rotated(of: path) {
            guard let m = (try? FileManager.default.attributesOfItem(atPath: f))?[.modificationDate] as? Date, m < cutoff else { break }
            through = max(through, (try? DecisionLog.readTail(path: f, firstPrev: nil))?.seq ?? 0)
            expired.append(f)
        }
        guard !expired.isEmpty else { return }
        let seq = appendFromWriter(LogRecord(event: "log.retention", session: nil, fields: [
            ("deleted", .array(expired.map { .string($0) })), ("through_seq", .int(through)), ("retention_days", .int(rotation.retentionDays)),
        ]))
        if seq > 0 { pendingDeletion = (expired, seq) }
    }

    /// Deletes the files a durable `log.retention` record named.
    func completeDeletion() {
        guard let p = pendingDeletion, headSeq >= p.afterSeq else { return }
        for f in p.files { unlink(f) }
        syncDirectory()
        pendingDeletion = nil
    }

    func syncDirectory() {
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); Glibc.close(dfd) }
    }
}
