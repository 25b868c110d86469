import Foundation
import CSQLite

struct SQLiteError: Error, CustomStringConvertible {
    var message: String
    var description: String { "sqlite: \(message)" }
}

/// The embedded store: one SQLite file in WAL mode. Every decision is one transaction that is
/// committed before the caller answers the client, so a killed gateway loses no entry it
/// acted on. All work runs on one serial queue, off the event loops and the task pool.
public final class SQLiteGreylistStore: GreylistStore, @unchecked Sendable {
    public let name = "sqlite"
    let path: String
    let queue = DispatchQueue(label: "mailgate.greylist.sqlite")
    var db: OpaquePointer?

    public init(path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var h: OpaquePointer?
        guard sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil) == SQLITE_OK, let handle = h else {
            let msg = h.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(h)
            throw SQLiteError(message: "\(path): \(msg)")
        }
        db = handle
        sqlite3_busy_timeout(handle, 5000)
        try exec("PRAGMA journal_mode=WAL")
        // NORMAL in WAL mode: a committed transaction survives the process being killed.
        try exec("PRAGMA synchronous=NORMAL")
        try exec("""
            CREATE TABLE IF NOT EXISTS triplets (key TEXT PRIMARY KEY, client TEXT NOT NULL, first_seen INTEGER NOT NULL,
                last_seen INTEGER NOT NULL, passed_at INTEGER, hits INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS triplets_last_seen ON triplets(last_seen);
            CREATE TABLE IF NOT EXISTS clients (client TEXT PRIMARY KEY, passes INTEGER NOT NULL, last_seen INTEGER NOT NULL,
                manual INTEGER NOT NULL DEFAULT 0);
            """)
    }

    deinit { sqlite3_close(db) }

    /// Closes the database after the work queued before; never blocks the caller's thread.
    public func close() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            queue.async {
                sqlite3_close(self.db)
                self.db = nil
                cont.resume()
            }
        }
    }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(db, sql, nil, nil, &err) == SQLITE_OK else {
            let m = err.map { String(cString: $0) } ?? "error"
            sqlite3_free(err)
            throw SQLiteError(message: m)
        }
    }

    enum Value { case int(Int64), text(String), null }

    /// Runs a statement, returning its rows as arrays of values.
    @discardableResult
    func run(_ sql: String, _ args: [Value] = []) throws -> [[Value]] {
        var st: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &st, nil) == SQLITE_OK, let s = st else {
            throw SQLiteError(message: String(cString: sqlite3_errmsg(db)))
        }
        defer { sqlite3_finalize(s) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, a) in args.enumerated() {
            switch a {
            case .int(let v): sqlite3_bind_int64(s, Int32(i + 1), v)
            case .text(let t): sqlite3_bind_text(s, Int32(i + 1), t, -1, transient)
            case .null: sqlite3_bind_null(s, Int32(i + 1))
            }
        }
        var rows: [[Value]] = []
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw SQLiteError(message: String(cString: sqlite3_errmsg(db))) }
            var row: [Value] = []
            for c in 0..<sqlite3_column_count(s) {
                switch sqlite3_column_type(s, c) {
                case SQLITE_INTEGER: row.append(.int(sqlite3_column_int64(s, c)))
                case SQLITE_NULL: row.append(.null)
                default: row.append(.text(String(cString: sqlite3_column_text(s, c))))
                }
            }
            rows.append(row)
        }
        return rows
    }

    func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            queue.async {
                guard self.db != nil else { cont.resume(throwing: SQLiteError(message: "store closed")); return }
                do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
            }
        }
    }

    func transaction<T>(_ body: () throws -> T) throws -> T {
        try exec("BEGIN IMMEDIATE")
        do {
            let r = try body()
            try exec("COMMIT")
            return r
        } catch {
            try? exec("ROLLBACK")
            throw error
        }
    }

    static func int(_ v: Value?) -> Int64? { if case .int(let i)? = v { return i } else { return nil } }

    public func check(key: String, client: String, now: Int64, settings: GreylistSettings) async throws -> GreylistDecision {
        try await onQueue {
            try self.transaction {
                if let c = try self.run("SELECT passes, manual FROM clients WHERE client = ?", [.text(client)]).first,
                   (SQLiteGreylistStore.int(c[1]) ?? 0) != 0 || (settings.autoAllowAfter > 0 && (SQLiteGreylistStore.int(c[0]) ?? 0) >= settings.autoAllowAfter) {
                    try self.run("UPDATE clients SET last_seen = ? WHERE client = ?", [.int(now), .text(client)])
                    return GreylistDecision(state: .allowed, remaining: 0)
                }
                let row = try self.run("SELECT first_seen, last_seen, passed_at, hits FROM triplets WHERE key = ?", [.text(key)]).first.map {
                    TripletRow(firstSeen: SQLiteGreylistStore.int($0[0]) ?? 0, lastSeen: SQLiteGreylistStore.int($0[1]) ?? 0,
                               passedAt: SQLiteGreylistStore.int($0[2]), hits: SQLiteGreylistStore.int($0[3]) ?? 0)
                }
                let (d, write, bump) = GreylistRules.decide(row, now: now, settings)
                switch write {
                case .insert:
                    try self.run("INSERT INTO triplets (key, client, first_seen, last_seen, passed_at, hits) VALUES (?, ?, ?, ?, NULL, 0)",
                                 [.text(key), .text(client), .int(now), .int(now)])
                case .restart:
                    try self.run("UPDATE triplets SET first_seen = ?, last_seen = ?, passed_at = NULL WHERE key = ?", [.int(now), .int(now), .text(key)])
                case .touch:
                    try self.run("UPDATE triplets SET last_seen = ?, hits = hits + 1 WHERE key = ?", [.int(now), .text(key)])
                case .pass:
                    try self.run("UPDATE triplets SET passed_at = ?, last_seen = ?, hits = hits + 1 WHERE key = ?", [.int(now), .int(now), .text(key)])
                case .none: break
                }
                if bump {
                    try self.run("""
                        INSERT INTO clients (client, passes, last_seen) VALUES (?, 1, ?)
                        ON CONFLICT(client) DO UPDATE SET passes = passes + 1, last_seen = excluded.last_seen
                        """, [.text(client), .int(now)])
                }
                return d
            }
        }
    }

    public func allow(client: String, now: Int64) async throws {
        try await onQueue {
            try self.run("""
                INSERT INTO clients (client, passes, last_seen, manual) VALUES (?, 0, ?, 1)
                ON CONFLICT(client) DO UPDATE SET manual = 1, last_seen = excluded.last_seen
                """, [.text(client), .int(now)])
        }
    }

    public func purge(now: Int64, settings: GreylistSettings) async throws -> Int {
        try await onQueue {
            try self.transaction {
                try self.run("DELETE FROM triplets WHERE (passed_at IS NULL AND first_seen + ? < ?) OR (passed_at IS NOT NULL AND last_seen + ? < ?)",
                             [.int(Int64(settings.window)), .int(now), .int(Int64(settings.lifetime)), .int(now)])
                let a = Int(sqlite3_changes(self.db))
                try self.run("DELETE FROM clients WHERE manual = 0 AND last_seen + ? < ?", [.int(Int64(settings.lifetime)), .int(now)])
                return a + Int(sqlite3_changes(self.db))
            }
        }
    }

    public func list(limit: Int) async throws -> [GreylistEntry] {
        try await onQueue {
            try self.run("SELECT key, client, first_seen, last_seen, passed_at, hits FROM triplets ORDER BY last_seen DESC LIMIT ?", [.int(Int64(limit))]).map { r in
                var key = "", client = ""
                if case .text(let k) = r[0] { key = k }
                if case .text(let c) = r[1] { client = c }
                return GreylistEntry(key: key, client: client, firstSeen: SQLiteGreylistStore.int(r[2]) ?? 0, lastSeen: SQLiteGreylistStore.int(r[3]) ?? 0,
                                     passedAt: SQLiteGreylistStore.int(r[4]), hits: SQLiteGreylistStore.int(r[5]) ?? 0)
            }
        }
    }

    public func stats(settings: GreylistSettings) async throws -> GreylistStats {
        try await onQueue {
            var s = GreylistStats()
            s.pending = Int(SQLiteGreylistStore.int(try self.run("SELECT count(*) FROM triplets WHERE passed_at IS NULL").first?.first) ?? 0)
            s.passed = Int(SQLiteGreylistStore.int(try self.run("SELECT count(*) FROM triplets WHERE passed_at IS NOT NULL").first?.first) ?? 0)
            s.clients = Int(SQLiteGreylistStore.int(try self.run("SELECT count(*) FROM clients").first?.first) ?? 0)
            s.allowedClients = Int(SQLiteGreylistStore.int(try self.run("SELECT count(*) FROM clients WHERE manual = 1 OR (? > 0 AND passes >= ?)",
                                                                         [.int(Int64(settings.autoAllowAfter)), .int(Int64(settings.autoAllowAfter))]).first?.first) ?? 0)
            return s
        }
    }
}
