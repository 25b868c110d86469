import DecisionLog
import Foundation
import Logging
import PostgresNIO
import PostgresSupport

/// The shared table read back: the records of every gateway, for `log query`, `log why`,
/// `log report` and `log verify` with `--postgres URL` (connect as mailgate_reader).
public struct PostgresLogSource: Sendable {
    let client: PostgresClient
    let logger = Logger(label: "mailgate.log.postgres")

    /// A source for the URL, open while `body` runs.
    public static func with<T: Sendable>(url: String, _ body: @Sendable (PostgresLogSource) async throws -> T) async throws -> T {
        let client = try PostgresURL.client(url, label: "mailgate.log.postgres.pool")
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            do {
                return try await body(PostgresLogSource(client: client))
            } catch let e as PSQLError {
                throw SourceError(description: "PostgreSQL \(url.redactingPassword): \(PostgresURL.describe(e))")
            }
        }
    }

    public struct SourceError: Error, CustomStringConvertible { public let description: String }

    /// Every record (its line as written) from `since` to before `until` (RFC 3339 prefixes)
    /// and of `session` if given, in time order across gateways; rows are streamed.
    public func lines(since: String? = nil, until: String? = nil, session: String? = nil, _ body: (String) throws -> Void) async throws {
        let from = try since.map(Self.bound), to = try until.map(Self.bound)
        let rows = try await client.query("""
            SELECT line FROM mailgate_decisions
            WHERE (\(from)::timestamptz IS NULL OR ts >= \(from)::timestamptz) AND (\(to)::timestamptz IS NULL OR ts < \(to)::timestamptz)
              AND (\(session)::text IS NULL OR session = \(session)::text)
            ORDER BY ts, gateway, seq
            """, logger: logger)
        for try await line in rows.decode(String.self) { try body(line) }
    }

    /// A time prefix (`2026-11-25`, `2026-11-25T10`) as the whole time stamp it begins.
    static func bound(_ prefix: String) throws -> String {
        let template = "0000-01-01T00:00:00.000Z"
        guard prefix.utf8.count <= template.utf8.count else { throw SourceError(description: "bad time \(prefix) (want e.g. 2026-11-25T10:00)") }
        let full = prefix + template.dropFirst(prefix.count)
        let shape = full.utf8.enumerated().allSatisfy { i, c in
            switch i {
            case 4, 7: return c == UInt8(ascii: "-")
            case 10: return c == UInt8(ascii: "T")
            case 13, 16: return c == UInt8(ascii: ":")
            case 19: return c == UInt8(ascii: ".")
            case 23: return c == UInt8(ascii: "Z")
            default: return c >= 48 && c <= 57
            }
        }
        guard shape else { throw SourceError(description: "bad time \(prefix) (want e.g. 2026-11-25T10:00)") }
        return full
    }

    /// Each gateway's chain in the table, checked as `log verify` checks a file: every row's
    /// hash is its line's, its line names its seq, and it names the row before as `prev`.
    public func verify(progress: ((Int) -> Void)? = nil) async throws -> [ChainCheck] {
        let rows = try await client.query("SELECT gateway, seq, line, hash FROM mailgate_decisions ORDER BY gateway, seq", logger: logger)
        var out: [ChainCheck] = []
        var current: ChainCheck?
        var n = 0
        for try await (gateway, seq, line, hash) in rows.decode((String, Int64, String, String).self) {
            if current?.gateway != gateway {
                if var c = current { c.finish(); out.append(c) }
                current = ChainCheck(gateway: gateway)
            }
            current?.add(seq: Int(seq), line: Array(line.utf8), hash: hash)
            n += 1
            if n % 100_000 == 0 { progress?(n) }
        }
        if var c = current { c.finish(); out.append(c) }
        return out
    }
}

/// One gateway's chain in the table.
public struct ChainCheck: Sendable {
    public let gateway: String
    public private(set) var records = 0
    public private(set) var firstSeq = 0
    public private(set) var lastSeq = 0
    public private(set) var problems: [String] = []
    /// Gaps the gateway itself recorded (`log.sink.gap`: retention deleted them first).
    public private(set) var notes: [String] = []
    private var lastHash = ""
    private var explained: [ClosedRange<Int>] = []
    private var gaps: [ClosedRange<Int>] = []

    public var ok: Bool { problems.isEmpty }

    init(gateway: String) { self.gateway = gateway }

    mutating func add(seq: Int, line: [UInt8], hash: String) {
        records += 1
        if records == 1 { firstSeq = seq }
        if Digest.sha256Hex(line) != hash { problem("record \(seq): its hash column is not its line's hash (edited)") }
        let prefix = RecordPrefix(line[...])
        if prefix?.seq != seq { problem("record \(seq): its line names another seq") }
        if let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], obj["event"] as? String == "log.sink.gap",
           let f = obj["from_seq"] as? Int, let t = obj["to_seq"] as? Int, f <= t {
            explained.append(f...t)
        }
        if records > 1 {
            if seq == lastSeq + 1 {
                if prefix?.prev != lastHash { problem("record \(seq): prev is not record \(lastSeq)'s hash (edited or reordered)") }
            } else if gaps.count < 100 {
                gaps.append((lastSeq + 1)...(seq - 1))
            } else {
                problem("more than 100 gaps")
            }
        }
        lastSeq = seq
        lastHash = hash
    }

    /// Judges the gaps: one the gateway recorded later in its chain is a note, any other a
    /// problem.
    mutating func finish() {
        for g in gaps {
            if explained.contains(g) {
                notes.append("\(gateway): records \(g.lowerBound) to \(g.upperBound) were deleted from the local log before they were shipped (log.sink.gap)")
            } else {
                problem("records \(g.lowerBound) to \(g.upperBound) are missing")
            }
        }
        gaps = []
    }

    private mutating func problem(_ p: String) {
        // A broken chain says enough after a hundred problems.
        if problems.count < 100 { problems.append("\(gateway): \(p)") }
    }
}

extension String {
    /// The URL with its password replaced by `***`, for messages.
    var redactingPassword: String {
        guard var u = URLComponents(string: self), u.password != nil else { return self }
        u.password = "***"
        return u.string ?? self
    }
}
