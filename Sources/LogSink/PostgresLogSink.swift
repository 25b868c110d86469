import DecisionLog
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import PostgresSupport

/// Ships the decision log into the shared PostgreSQL table (`contrib/postgres/decision-log.sql`)
/// as this gateway's chain. The local file stays the source of truth: the sink reads it
/// (`LogFollower`) after its last durable record, never the other way round, so an outage of
/// the database loses nothing — the sink asks the table where its chain ends and goes on
/// from there. Every batch is one INSERT (all rows or none), and where to go on is always
/// asked anew after a failure, so a batch whose commit was not acknowledged is not sent
/// twice. A table whose chain for this gateway does not join the local log (another gateway
/// under the same name, a log moved aside and begun anew) is not written to: the sink says
/// so and waits for the operator.
public final class PostgresLogSink: Sendable {
    public enum State: String, Sendable { case starting, shipping, failing, diverged }

    public struct Status: Sendable {
        public var state: State = .starting
        /// The last record the table holds for this gateway, as far as the sink knows.
        public var shippedSeq = 0
        public var detail = ""
        public var failures = 0
    }

    public let url: String
    public let gateway: String
    let log: DecisionLog
    let client: PostgresClient
    let logger = Logger(label: "mailgate.log.sink")
    let statusBox = NIOLockedValueBox(Status())
    /// Rows in one INSERT.
    static let batchLines = 1000
    static let batchOctets = 1 << 20

    public init(url: String, gateway: String, log: DecisionLog) throws {
        self.url = url
        self.gateway = gateway
        self.log = log
        client = try PostgresURL.client(url, label: "mailgate.log.sink.pool")
    }

    public var status: Status { statusBox.withLockedValue { $0 } }

    /// Records the log holds that the table does not yet (a metric).
    public var lag: Int { max(0, log.durableSeq - status.shippedSeq) }

    /// Ships until cancelled; a failure is retried after a pause that grows to 30 s.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.client.run() }
            await self.shipLoop()
            group.cancelAll()
        }
    }

    func shipLoop() async {
        var pause = 0.5
        while !Task.isCancelled {
            let before = status.shippedSeq
            do {
                try await shipFromWhereTheTableEnds()
            } catch is CancellationError {
                return
            } catch let d as Diverged {
                let already = status.state == .diverged
                report(.diverged, d.description)
                if !already { log.append(LogRecord(event: "log.sink.diverged", fields: [("gateway", .string(gateway)), ("reason", .string(d.description)), ("alert", .bool(true))])) }
                // Nothing is written until the operator acts; look again now and then.
                try? await Task.sleep(for: .seconds(60))
                continue
            } catch {
                // Stopping cancels the query in flight: not a failure.
                if Task.isCancelled { return }
                report(.failing, PostgresURL.describe(error))
            }
            // Quick again after a spell of shipping; slower and slower while it keeps failing.
            if status.shippedSeq > before { pause = 0.5 }
            try? await Task.sleep(for: .seconds(pause))
            pause = min(pause * 2, 30)
        }
    }

    struct Diverged: Error, CustomStringConvertible { let description: String }

    /// Asks where this gateway's chain ends, checks that it joins the local log, then ships
    /// what follows as it becomes durable, until an error.
    func shipFromWhereTheTableEnds() async throws {
        let (lastSeq, lastHash) = try await tableEnd()
        statusBox.withLockedValue { $0.shippedSeq = lastSeq }
        if lastSeq > log.durableSeq {
            throw Diverged(description: "the table holds \(gateway)'s records up to \(lastSeq), the local log only up to \(log.durableSeq): another gateway writes under this name, or the log was begun anew (set log.gateway to a new name)")
        }
        let follower = try LogFollower(path: log.path, after: lastSeq)
        var joined = lastSeq == 0
        var expected = lastSeq + 1
        while !Task.isCancelled {
            let lines = try follower.read(upTo: log.durableSeq, maxLines: Self.batchLines, maxOctets: Self.batchOctets)
            guard let first = lines.first else {
                if status.state != .shipping { report(.shipping, "") }
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if !joined {
                guard first.seq == lastSeq + 1, Self.prev(of: first.bytes) == lastHash else {
                    throw Diverged(description: "record \(first.seq) of the local log does not follow record \(lastSeq) in the table (its prev is not that record's hash)")
                }
                joined = true
            }
            if first.seq != expected { noteGap(from: expected, to: first.seq - 1) }
            try await insert(lines)
            expected = (lines.last?.seq ?? expected) + 1
            statusBox.withLockedValue {
                $0.shippedSeq = expected - 1
                $0.state = .shipping
                $0.detail = ""
            }
        }
    }

    /// Records gone from the local files before they were shipped (retention deleted them
    /// during a long outage): the table's chain has a gap, said in the log and on stderr.
    func noteGap(from: Int, to: Int) {
        let text = "records \(from) to \(to) were gone from the local log before they could be shipped"
        logger.error("decision-log sink: \(text)")
        log.append(LogRecord(event: "log.sink.gap", fields: [("gateway", .string(gateway)), ("from_seq", .int(from)), ("to_seq", .int(to)), ("alert", .bool(true))]))
    }

    func report(_ state: State, _ detail: String) {
        let was = statusBox.withLockedValue { s -> State in
            let was = s.state
            s.state = state
            s.detail = detail
            if state == .failing { s.failures += 1 }
            return was
        }
        if was != state {
            if state == .shipping { logger.notice("decision-log sink: shipping to PostgreSQL as \(gateway)") }
            else { logger.error("decision-log sink: \(state.rawValue): \(detail)") }
        }
    }

    /// The last record the table holds for this gateway: (0, "") for none.
    func tableEnd() async throws -> (Int, String) {
        var end = (0, "")
        let rows = try await client.query("SELECT seq, hash FROM mailgate_decisions_last(\(gateway))", logger: logger)
        for try await (s, h) in rows.decode((Int64?, String?).self) {
            if let s, let h { end = (Int(s), h) }
        }
        return end
    }

    /// One INSERT for the batch: every row or none.
    func insert(_ lines: [LogFollower.Line]) async throws {
        var seqs: [Int64] = [], stamps: [String] = [], sessions: [String] = [], events: [String] = [], texts: [String] = [], hashes: [String] = []
        for l in lines {
            let fields = Self.fields(of: l.bytes)
            seqs.append(Int64(l.seq))
            stamps.append(fields.ts)
            sessions.append(fields.session)
            events.append(fields.event)
            texts.append(String(decoding: l.bytes, as: UTF8.self))
            hashes.append(Digest.sha256Hex(l.bytes))
        }
        try await client.query("""
            INSERT INTO mailgate_decisions (gateway, seq, ts, session, event, line, hash)
            SELECT \(gateway), s, t::timestamptz, NULLIF(se, ''), e, l, h
            FROM unnest(\(seqs)::bigint[], \(stamps)::text[], \(sessions)::text[], \(events)::text[], \(texts)::text[], \(hashes)::text[]) AS u(s, t, se, e, l, h)
            """, logger: logger)
    }

    /// The columns the table keeps beside the line, from the record.
    static func fields(of line: [UInt8]) -> (ts: String, session: String, event: String) {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return ("1970-01-01T00:00:00Z", "", "?") }
        return (obj["ts"] as? String ?? "1970-01-01T00:00:00Z", obj["session"] as? String ?? "", obj["event"] as? String ?? "?")
    }

    /// The record's `prev`.
    static func prev(of line: [UInt8]) -> String? {
        let key = Array("\"prev\":\"".utf8)
        guard let r = line.prefix(160).firstRange(of: key), r.upperBound + 64 <= line.count else { return nil }
        return String(decoding: line[r.upperBound..<(r.upperBound + 64)], as: UTF8.self)
    }
}
