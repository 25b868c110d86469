import Foundation
import Logging
import NIOCore
import PostgresNIO
import PostgresSupport
import NIOConcurrencyHelpers

/// The shared store: PostgreSQL through postgres-nio, for several gateways behind one MX.
/// The schema is created on start. A decision is one transaction: the triplet row is
/// inserted if missing (ON CONFLICT DO NOTHING) and then locked (SELECT … FOR UPDATE), so two
/// gateways that see the same triplet at once apply the rules one after the other.
public final class PostgresGreylistStore: GreylistStore, @unchecked Sendable {
    public let name = "postgresql"
    let client: PostgresClient
    let runTask: Task<Void, Never>
    let logger = Logger(label: "mailgate.greylist.postgres")

    /// `url`: postgres://user:password@host:port/database
    public init(url: String) throws {
        let c: PostgresClient
        do { c = try PostgresURL.client(url, label: "mailgate.greylist.postgres.pool") } catch {
            throw GreylistStoreError(message: "\(error)")
        }
        client = c
        runTask = Task { await c.run() }
    }

    /// Creates the schema once. Concurrent first uses share one attempt (a failed one is
    /// retried by the next use), and gateways that start together take turns under an
    /// advisory lock: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe when run at once.
    func ensureSchema() async throws {
        let attempt = schemaAttempt.withLockedValue { a -> Task<Void, any Error> in
            if let a { return a }
            let new = Task { try await self.createSchema() }
            a = new
            return new
        }
        do {
            try await attempt.value
        } catch {
            schemaAttempt.withLockedValue { if $0 == attempt { $0 = nil } }
            throw GreylistStoreError(message: "PostgreSQL: \(Self.describe(error))")
        }
    }

    /// The attempt in flight or the one that succeeded (awaiting it again costs nothing).
    let schemaAttempt = NIOLockedValueBox<Task<Void, any Error>?>(nil)

    func createSchema() async throws {
        let logger = self.logger
        try await client.withTransaction(logger: logger) { conn in
            // Any constant will do, as long as every gateway uses the same one.
            for try await _ in try await conn.query("SELECT pg_advisory_xact_lock(4711203917)", logger: logger) {}
            try await conn.query("""
                CREATE TABLE IF NOT EXISTS greylist_triplets (key TEXT PRIMARY KEY, client TEXT NOT NULL, first_seen BIGINT NOT NULL,
                    last_seen BIGINT NOT NULL, passed_at BIGINT, hits BIGINT NOT NULL DEFAULT 0)
                """, logger: logger)
            try await conn.query("CREATE INDEX IF NOT EXISTS greylist_triplets_last_seen ON greylist_triplets(last_seen)", logger: logger)
            try await conn.query("""
                CREATE TABLE IF NOT EXISTS greylist_clients (client TEXT PRIMARY KEY, passes BIGINT NOT NULL, last_seen BIGINT NOT NULL,
                    manual BOOLEAN NOT NULL DEFAULT FALSE)
                """, logger: logger)
        }
    }

    static func describe(_ error: any Error) -> String { PostgresURL.describe(error) }

    public func close() async {
        runTask.cancel()
        await runTask.value
    }

    func checkNow(key: String, client clientKey: String, now: Int64, settings: GreylistSettings) async throws -> GreylistDecision {
        let logger = self.logger
        do {
            return try await decide(key: key, clientKey: clientKey, now: now, settings: settings, logger: logger)
        } catch let e as GreylistStoreError {
            throw e
        } catch {
            throw GreylistStoreError(message: "PostgreSQL: \(Self.describe(error))")
        }
    }

    func decide(key: String, clientKey: String, now: Int64, settings: GreylistSettings, logger: Logger) async throws -> GreylistDecision {
        try await client.withTransaction(logger: logger) { conn in
            var allowed = false
            for try await (passes, manual) in try await conn.query("SELECT passes, manual FROM greylist_clients WHERE client = \(clientKey)",
                                                                   logger: logger).decode((Int64, Bool).self) {
                allowed = manual || (settings.autoAllowAfter > 0 && passes >= Int64(settings.autoAllowAfter))
            }
            if allowed {
                try await conn.query("UPDATE greylist_clients SET last_seen = \(now) WHERE client = \(clientKey)", logger: logger)
                return GreylistDecision(state: .allowed, remaining: 0)
            }
            var inserted = false
            for try await _ in try await conn.query("""
                INSERT INTO greylist_triplets (key, client, first_seen, last_seen, passed_at, hits) VALUES (\(key), \(clientKey), \(now), \(now), NULL, 0)
                ON CONFLICT (key) DO NOTHING RETURNING key
                """, logger: logger).decode(String.self) { inserted = true }
            if inserted { return GreylistDecision(state: .new, remaining: settings.delay) }
            var row: TripletRow?
            for try await (f, l, p, h) in try await conn.query("SELECT first_seen, last_seen, passed_at, hits FROM greylist_triplets WHERE key = \(key) FOR UPDATE",
                                                               logger: logger).decode((Int64, Int64, Int64?, Int64).self) {
                row = TripletRow(firstSeen: f, lastSeen: l, passedAt: p, hits: h)
            }
            let (d, write, bump) = GreylistRules.decide(row, now: now, settings)
            switch write {
            case .insert:
                try await conn.query("INSERT INTO greylist_triplets (key, client, first_seen, last_seen, passed_at, hits) VALUES (\(key), \(clientKey), \(now), \(now), NULL, 0)", logger: logger)
            case .restart:
                try await conn.query("UPDATE greylist_triplets SET first_seen = \(now), last_seen = \(now), passed_at = NULL WHERE key = \(key)", logger: logger)
            case .touch:
                try await conn.query("UPDATE greylist_triplets SET last_seen = \(now), hits = hits + 1 WHERE key = \(key)", logger: logger)
            case .pass:
                try await conn.query("UPDATE greylist_triplets SET passed_at = \(now), last_seen = \(now), hits = hits + 1 WHERE key = \(key)", logger: logger)
            case .none: break
            }
            if bump {
                try await conn.query("""
                    INSERT INTO greylist_clients (client, passes, last_seen) VALUES (\(clientKey), 1, \(now))
                    ON CONFLICT (client) DO UPDATE SET passes = greylist_clients.passes + 1, last_seen = excluded.last_seen
                    """, logger: logger)
            }
            return d
        }
    }

    func allowNow(client clientKey: String, now: Int64) async throws {
        try await client.query("""
            INSERT INTO greylist_clients (client, passes, last_seen, manual) VALUES (\(clientKey), 0, \(now), TRUE)
            ON CONFLICT (client) DO UPDATE SET manual = TRUE, last_seen = excluded.last_seen
            """, logger: logger)
    }

    func purgeNow(now: Int64, settings: GreylistSettings) async throws -> Int {
        let w = Int64(settings.window), l = Int64(settings.lifetime)
        var n = 0
        for try await _ in try await client.query("""
            DELETE FROM greylist_triplets WHERE (passed_at IS NULL AND first_seen + \(w) < \(now)) OR (passed_at IS NOT NULL AND last_seen + \(l) < \(now)) RETURNING key
            """, logger: logger).decode(String.self) { n += 1 }
        for try await _ in try await client.query("DELETE FROM greylist_clients WHERE NOT manual AND last_seen + \(l) < \(now) RETURNING client",
                                                  logger: logger).decode(String.self) { n += 1 }
        return n
    }

    func listNow(limit: Int) async throws -> [GreylistEntry] {
        var out: [GreylistEntry] = []
        for try await (k, c, f, l, p, h) in try await client.query("""
            SELECT key, client, first_seen, last_seen, passed_at, hits FROM greylist_triplets ORDER BY last_seen DESC LIMIT \(Int64(limit))
            """, logger: logger).decode((String, String, Int64, Int64, Int64?, Int64).self) {
            out.append(GreylistEntry(key: k, client: c, firstSeen: f, lastSeen: l, passedAt: p, hits: h))
        }
        return out
    }

    func statsNow(settings: GreylistSettings) async throws -> GreylistStats {
        var s = GreylistStats()
        let n = Int64(settings.autoAllowAfter)
        for try await (pending, passed) in try await client.query("""
            SELECT count(*) FILTER (WHERE passed_at IS NULL), count(*) FILTER (WHERE passed_at IS NOT NULL) FROM greylist_triplets
            """, logger: logger).decode((Int64, Int64).self) {
            s.pending = Int(pending)
            s.passed = Int(passed)
        }
        for try await (all, allowed) in try await client.query("""
            SELECT count(*), count(*) FILTER (WHERE manual OR (\(n) > 0 AND passes >= \(n))) FROM greylist_clients
            """, logger: logger).decode((Int64, Int64).self) {
            s.clients = Int(all)
            s.allowedClients = Int(allowed)
        }
        return s
    }
}

/// Every operation gets `PostgresGreylistStore.timeout`: a database that is down or does not
/// answer becomes an error the check handles (its onError) instead of a wait as long as the
/// check's budget (the pool itself waits for a connection indefinitely).
extension PostgresGreylistStore {
    public static let timeout: Duration = .seconds(5)

    public func prepare() async throws {
        try await bounded {}
    }

    public func check(key: String, client clientKey: String, now: Int64, settings: GreylistSettings) async throws -> GreylistDecision {
        try await bounded { try await self.checkNow(key: key, client: clientKey, now: now, settings: settings) }
    }

    public func allow(client clientKey: String, now: Int64) async throws {
        try await bounded { try await self.allowNow(client: clientKey, now: now) }
    }

    public func purge(now: Int64, settings: GreylistSettings) async throws -> Int {
        try await bounded { try await self.purgeNow(now: now, settings: settings) }
    }

    public func list(limit: Int) async throws -> [GreylistEntry] {
        try await bounded { try await self.listNow(limit: limit) }
    }

    public func stats(settings: GreylistSettings) async throws -> GreylistStats {
        try await bounded { try await self.statsNow(settings: settings) }
    }

    /// Runs `body` (after making sure of the schema) and returns its result, or throws after
    /// `timeout`, whichever comes first; the loser is cancelled.
    func bounded<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let waiting = NIOLockedValueBox<CheckedContinuation<T, any Error>?>(nil)
        let take: @Sendable () -> CheckedContinuation<T, any Error>? = {
            waiting.withLockedValue { c in
                defer { c = nil }
                return c
            }
        }
        let work = NIOLockedValueBox<Task<Void, Never>?>(nil)
        return try await withCheckedThrowingContinuation { cont in
            waiting.withLockedValue { $0 = cont }
            let timer = Task {
                try? await Task.sleep(for: Self.timeout)
                guard !Task.isCancelled else { return }
                work.withLockedValue { $0 }?.cancel()
                take()?.resume(throwing: GreylistStoreError(message: "PostgreSQL: no answer within \(Self.timeout.components.seconds) s"))
            }
            work.withLockedValue { $0 = Task {
                do {
                    try await self.ensureSchema()
                    let r = try await body()
                    timer.cancel()
                    take()?.resume(returning: r)
                } catch {
                    timer.cancel()
                    take()?.resume(throwing: error)
                }
            } }
        }
    }
}

public struct GreylistStoreError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
