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
    public var lag: Int {
        let (d, overflow) = log.durableSeq.subtractingReportingOverflow(status.shippedSeq)
        return overflow ? 0 : max(0, d)
    }

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
        guard lastSeq >= 0 else { throw Diverged(description: "the table names record \(lastSeq) as \(gateway)'s last, which no log writes") }
        statusBox.withLockedValue { $0.shippedSeq = lastSeq }
        if lastSeq > log.durableSeq {
            throw Diverged(description: "the table holds \(gateway)'s records up to \(lastSeq), the local log only up to \(log.durableSeq): another gateway writes under this name, or the log was begun anew (set log.gateway to a new name)")
        }
        // From the table's last record itself: it must be the local log's.
        let follower = try LogFollower(path: log.path, after: max(0, lastSeq - 1))
        var pending = lastSeq > 0 ? try await join(follower, lastSeq: lastSeq, lastHash: lastHash) : []
        report(.shipping, "")
        var expected = lastSeq + 1
        while !Task.isCancelled {
            let lines = pending.isEmpty ? try follower.read(upTo: log.durableSeq, maxLines: Self.batchLines, maxOctets: Self.batchOctets) : pending
            pending = []
            guard !lines.isEmpty else {
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            var next = expected
            for l in lines {
                if l.seq != next { noteGap(from: next, to: l.seq - 1) }
                next = l.seq + 1
            }
            try await insert(lines)
            expected = next
            statusBox.withLockedValue {
                $0.shippedSeq = next - 1
                $0.state = .shipping
                $0.detail = ""
            }
        }
    }

    /// Reads the local record the table ends with and checks that it is the same record (or,
    /// when retention deleted it, that what follows names it as `prev`). Returns the lines
    /// read past it, to be shipped.
    func join(_ follower: LogFollower, lastSeq: Int, lastHash: String) async throws -> [LogFollower.Line] {
        while true {
            guard let first = try follower.read(upTo: log.durableSeq, maxLines: 1).first else {
                // The local files lack that record and hold nothing after it yet.
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if first.seq == lastSeq {
                guard Digest.sha256Hex(first.bytes) == lastHash else {
                    throw Diverged(description: "record \(lastSeq) in the table is not record \(lastSeq) of the local log: another gateway writes under this name, or the log was begun anew (set log.gateway to a new name)")
                }
                return []
            }
            if first.seq == lastSeq + 1 && RecordPrefix(first.bytes[...])?.prev != lastHash {
                throw Diverged(description: "record \(first.seq) of the local log does not follow record \(lastSeq) in the table (its prev is not that record's hash)")
            }
            // Past it: the records between were deleted locally (a gap, noted as it is shipped).
            return [first]
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
        var seqs: [Int64] = [], stamps: [Double] = [], sessions: [String] = [], events: [String] = [], texts: [String] = [], hashes: [String] = []
        for l in lines {
            let fields = Self.fields(of: l.bytes)
            seqs.append(Int64(l.seq))
            stamps.append(fields.seconds)
            sessions.append(fields.session)
            events.append(fields.event)
            texts.append(Self.text(l.bytes))
            hashes.append(Digest.sha256Hex(l.bytes))
        }
        try await client.query("""
            INSERT INTO mailgate_decisions (gateway, seq, ts, session, event, line, hash)
            SELECT \(gateway), s, to_timestamp(t), NULLIF(se, ''), e, l, h
            FROM unnest(\(seqs)::bigint[], \(stamps)::float8[], \(sessions)::text[], \(events)::text[], \(texts)::text[], \(hashes)::text[]) AS u(s, t, se, e, l, h)
            """, logger: logger)
    }

    /// The line as PostgreSQL text: a NUL (which no record the gateway writes holds) cannot
    /// be stored, and would stop the sink for good; it becomes U+FFFD, and `log verify
    /// --postgres` then reports the row as not its hash.
    static func text(_ line: [UInt8]) -> String {
        let s = String(decoding: line, as: UTF8.self)
        return line.contains(0) ? s.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : s
    }

    /// The columns the table keeps beside the line, from the record (its time in Unix seconds).
    static func fields(of line: [UInt8]) -> (seconds: Double, session: String, event: String) {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return (0, "", "?") }
        return (seconds(of: obj["ts"] as? String ?? ""), obj["session"] as? String ?? "", obj["event"] as? String ?? "?")
    }

    /// `2026-12-04T01:26:20.123Z` in Unix seconds (0 when it is not one).
    static func seconds(of ts: String) -> Double {
        let u = Array(ts.utf8)
        guard u.count >= 19 else { return 0 }
        func num(_ r: Range<Int>) -> Int? {
            var n = 0
            for c in u[r] {
                guard c >= 48 && c <= 57 else { return nil }
                n = n * 10 + Int(c - 48)
            }
            return n
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16), let s = num(17..<19),
              (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61 else { return 0 }
        var t = tm()
        t.tm_year = Int32(y - 1900)
        t.tm_mon = Int32(mo - 1)
        t.tm_mday = Int32(d)
        t.tm_hour = Int32(h)
        t.tm_min = Int32(mi)
        t.tm_sec = Int32(s)
        let ms = u.count >= 23 && u[19] == UInt8(ascii: ".") ? (num(20..<23) ?? 0) : 0
        return Double(timegm(&t)) + Double(ms) / 1000
    }
}
