import Foundation
import Testing
import DecisionLog
import LogSink
import PostgresTestServer
import NIOPosix
@testable import Gateway

/// The shared PostgreSQL sink against a real PostgreSQL on loopback: the insert-only table
/// of contrib/postgres/decision-log.sql, two gateways writing at once, catch-up after an
/// outage without loss or doubling, and the CLI reading it back.
@Suite(.serialized) struct LogSinkTests {
    static let script = CLITests.root.appendingPathComponent("contrib/postgres/decision-log.sql").path

    /// A new database with the sink's table, as the script sets it up.
    static func database() async throws -> String {
        let name = "sink_\(UInt32.random(in: 0...UInt32.max))"
        try await PostgresServer.createDatabase(name)
        try await PostgresServer.psql(database: name, ["-f", script])
        return name
    }

    static func gateway(_ db: String, name: String, down: RecordingDownstream, logPath: String? = nil) async throws -> TestGateway {
        let url = try await PostgresServer.url(database: db, user: "mailgate_writer")
        return try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], logPath: logPath) { c in
            c.log.postgres = url
            c.log.gateway = name
            // Loopback is not a relay client here: a foreign recipient is refused.
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
        }
    }

    /// Waits until everything the gateway's log holds on disk is in the table.
    static func shipped(_ gw: TestGateway) async throws -> PostgresLogSink.Status {
        try await gw.log.flush()
        for _ in 0..<300 {
            if let s = gw.server.logSinkStatus, s.state == .shipping, s.shippedSeq == gw.log.durableSeq { return s }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try #require(gw.server.logSinkStatus)
    }

    /// Waits up to 5 s for the gateway's sink to be in `state`.
    static func state(_ gw: TestGateway, becomes state: PostgresLogSink.State) async throws -> Bool {
        for _ in 0..<200 {
            if gw.server.logSinkStatus?.state == state { return true }
            try await Task.sleep(for: .milliseconds(25))
        }
        return false
    }

    static func rows(_ db: String, _ sql: String) async throws -> [String] {
        try await PostgresServer.psql(database: db, ["-A", "-t", "-c", sql]).split(separator: "\n").map(String.init)
    }

    @Test func theWriterMayOnlyInsertAndNobodyMayChangeARow() async throws {
        let db = try await Self.database()
        func asWriter(_ sql: String) async -> String {
            do { return try await PostgresServer.psql(database: db, user: "mailgate_writer", ["-c", sql]) } catch { return "\(error)" }
        }
        let insert = "INSERT INTO mailgate_decisions (gateway, seq, ts, event, line, hash) VALUES ('g', 1, now(), 'e', '{}', 'h')"
        #expect(await asWriter(insert) == "")
        #expect(await asWriter("UPDATE mailgate_decisions SET line = 'x'").contains("permission denied for table mailgate_decisions"))
        #expect(await asWriter("DELETE FROM mailgate_decisions").contains("permission denied for table mailgate_decisions"))
        #expect(await asWriter("TRUNCATE mailgate_decisions").contains("permission denied for table mailgate_decisions"))
        #expect(await asWriter("SELECT line FROM mailgate_decisions").contains("permission denied for table mailgate_decisions"))
        // It learns where its chain ends, and nothing more.
        #expect(try await PostgresServer.psql(database: db, user: "mailgate_writer", ["-A", "-t", "-c", "SELECT seq, hash FROM mailgate_decisions_last('g')"]) == "1|h\n")
        // The owner cannot change or delete a row either while the triggers are on.
        for sql in ["UPDATE mailgate_decisions SET line = 'x'", "DELETE FROM mailgate_decisions", "TRUNCATE mailgate_decisions"] {
            await #expect(throws: (any Error).self) { try await PostgresServer.psql(database: db, ["-c", sql]) }
        }
        #expect(try await Self.rows(db, "SELECT line FROM mailgate_decisions") == ["{}"])
        // The reader reads, and only reads.
        #expect(try await PostgresServer.psql(database: db, user: "mailgate_reader", ["-A", "-t", "-c", "SELECT count(*) FROM mailgate_decisions"]) == "1\n")
        await #expect(throws: (any Error).self) { try await PostgresServer.psql(database: db, user: "mailgate_reader", ["-c", insert]) }
        // The script can run again on a database that has it.
        try await PostgresServer.psql(database: db, ["-f", Self.script])
    }

    @Test func twoGatewaysWriteOneSinkAndTheCLIReadsBoth() async throws {
        let db = try await Self.database()
        let down = try await RecordingDownstream.start()
        let a = try await Self.gateway(db, name: "mx-a", down: down)
        let b = try await Self.gateway(db, name: "mx-b", down: down)
        // At once: accepted mail and a relay refusal through each.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for gw in [a, b] {
                group.addTask {
                    for i in 0..<3 {
                        let r = try await Client.smtplib(port: gw.port, from: "s\(i)@example.net", to: ["u\(i)@example.org"], data: "Subject: t\r\n\r\nhi\r\n")
                        #expect(r["ok"] as? Bool == true, "\(r)")
                    }
                    let d = try await Client.raw(port: gw.port, [("EHLO c.example.net\r\n", 1), ("MAIL FROM:<x@example.net>\r\n", 1), ("RCPT TO:<v@example.com>\r\n", 1), ("QUIT\r\n", 1)])
                    #expect(d.replies[2] == ["550 5.7.1 <v@example.com>: Relay access denied"], "\(d.replies)")
                }
            }
            try await group.waitForAll()
        }
        _ = try await a.records(waitingFor: "session.close", count: 4)
        _ = try await b.records(waitingFor: "session.close", count: 4)
        let sa = try await Self.shipped(a), sb = try await Self.shipped(b)
        #expect(sa.state == .shipping && sb.state == .shipping)
        // Each gateway's chain is its file, line for line.
        for (gw, name) in [(a, "mx-a"), (b, "mx-b")] {
            var file: [String] = []
            try LogReader.forEachLine(path: gw.logPath) { file.append(String($0)) }
            let table = try await Self.rows(db, "SELECT line FROM mailgate_decisions WHERE gateway = '\(name)' ORDER BY seq")
            #expect(table == Array(file.prefix(table.count)))
            #expect(table.count == gw.log.durableSeq)
        }
        let refusal = try #require(try await a.records().first { $0["check"] as? String == "relay" })
        let session = try #require(refusal["session"] as? String)

        let reader = try await PostgresServer.url(database: db, user: "mailgate_reader")
        let (status, out) = try await runProgram(CLITests.binary, ["log", "report", "--postgres", reader])
        #expect(status == 0, "\(out)")
        // Both gateways' mail: six accepted, two refused.
        #expect(out.split(separator: "\n").contains("  total         6        2         0"), "\(out)")
        let (vs, vout) = try await runProgram(CLITests.binary, ["log", "verify", "--postgres", reader])
        #expect(vs == 0, "\(vout)")
        #expect(vout.contains("mx-a: OK, \(sa.shippedSeq) records, chain intact (seq 1 to \(sa.shippedSeq))"), "\(vout)")
        #expect(vout.contains("mx-b: OK, \(sb.shippedSeq) records, chain intact (seq 1 to \(sb.shippedSeq))"), "\(vout)")
        let (ws, wout) = try await runProgram(CLITests.binary, ["log", "why", "--postgres", reader, session])
        #expect(ws == 0, "\(wout)")
        #expect(wout.split(separator: "\n").last?.hasPrefix("In short: refused at rcpt by relay: 550 5.7.1 <v@example.com>: Relay access denied") == true, "\(wout)")
        let (qs, qout) = try await runProgram(CLITests.binary, ["log", "query", "--postgres", reader, "--check", "relay", "--format", "json"])
        #expect(qs == 0)
        #expect(qout.split(separator: "\n").count == 2, "\(qout)")

        await a.stop()
        await b.stop()
        down.stop()
        // An edit or a deletion behind the triggers' back is found.
        try await PostgresServer.psql(database: db, ["-c", """
            ALTER TABLE mailgate_decisions DISABLE TRIGGER mailgate_decisions_append_only;
            UPDATE mailgate_decisions SET line = replace(line, '"event"', '"event" ') WHERE gateway = 'mx-b' AND seq = 3;
            DELETE FROM mailgate_decisions WHERE gateway = 'mx-a' AND seq = 5
            """])
        let (bad, said) = try await runProgram(CLITests.binary, ["log", "verify", "--postgres", reader])
        #expect(bad == 1)
        #expect(said.contains("FAIL mx-a: records 5 to 5 are missing"), "\(said)")
        #expect(said.contains("FAIL mx-b: record 3: its hash column is not its line's hash (edited)"), "\(said)")
    }

    @Test func anOutageLosesNothingAndDoublesNothing() async throws {
        let db = try await Self.database()
        let down = try await RecordingDownstream.start()
        let gw = try await Self.gateway(db, name: "mx-a", down: down)
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: 1\r\n\r\nhi\r\n")
        #expect(r["ok"] as? Bool == true)
        _ = try await Self.shipped(gw)
        // The database refuses the writer: mail goes on, the sink fails and waits.
        try await PostgresServer.psql(database: db, ["-c", "REVOKE INSERT ON mailgate_decisions FROM mailgate_writer"])
        for i in 0..<3 {
            let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b\(i)@example.org"], data: "Subject: 2\r\n\r\nhi\r\n")
            #expect(r["ok"] as? Bool == true)
        }
        try await gw.log.flush()
        #expect(try await Self.state(gw, becomes: .failing))
        #expect(gw.server.logSinkStatus?.detail.contains("permission denied") == true, "\(String(describing: gw.server.logSinkStatus))")
        // Said by /health and /metrics, but mail is not tempfailed for it.
        let health = await Health.check(shared: gw.server.shared, group: MultiThreadedEventLoopGroup.singleton)
        #expect(health.ok)
        let json = String(decoding: health.json, as: UTF8.self)
        #expect(json.contains("\"log_sink\":{\"state\":\"failing\",\"gateway\":\"mx-a\""), "\(json)")
        let metrics = String(decoding: gw.server.shared.metrics.exposition(log: gw.log, sessions: 0, zones: [], sink: gw.server.shared.logSink), as: UTF8.self)
        #expect(metrics.contains("mailgate_log_sink_shipping 0"), "\(metrics)")
        #expect(metrics.contains("mailgate_log_sink_lag_records"), "\(metrics)")
        // Back: it catches up from where the table ends.
        try await PostgresServer.psql(database: db, ["-c", "GRANT INSERT ON mailgate_decisions TO mailgate_writer"])
        let s = try await Self.shipped(gw)
        #expect(s.state == .shipping)
        await gw.stop()
        // Records written while no sink could be reached at all (the gateway stopped, its
        // log written on by another run whose database was down) are shipped by the next.
        let path = gw.logPath
        let downGW = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], logPath: path) { c in
            c.log.postgres = "postgres://mailgate_writer@127.0.0.1:\(PostgresServer.freePort())/\(db)"
            c.log.gateway = "mx-a"
        }
        _ = try await Client.smtplib(port: downGW.port, from: "a@example.net", to: ["c@example.org"], data: "Subject: 3\r\n\r\nhi\r\n")
        await downGW.stop()
        let again = try await Self.gateway(db, name: "mx-a", down: down, logPath: path)
        _ = try await Self.shipped(again)
        await again.stop()
        var file: [String] = []
        try LogReader.forEachLine(path: path) { file.append(String($0)) }
        let table = try await Self.rows(db, "SELECT line FROM mailgate_decisions ORDER BY seq")
        // Every record once, in order (the last run's own stop records may follow later).
        #expect(table == Array(file.prefix(table.count)))
        #expect(table.count >= file.count - 3, "\(table.count) of \(file.count)")
        #expect(try await Self.rows(db, "SELECT count(*) = count(DISTINCT seq) AND max(seq) = count(*) FROM mailgate_decisions") == ["t"])
        down.stop()
    }

    @Test func aSecondChainUnderTheSameNameIsRefused() async throws {
        let db = try await Self.database()
        let down = try await RecordingDownstream.start()
        let first = try await Self.gateway(db, name: "mx-a", down: down)
        _ = try await Client.smtplib(port: first.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: 1\r\n\r\nhi\r\n")
        _ = try await first.records(waitingFor: "session.close")
        let shipped = try await Self.shipped(first).shippedSeq
        // Another gateway (its own new log) that calls itself mx-a too.
        let second = try await Self.gateway(db, name: "mx-a", down: down)
        #expect(try await Self.state(second, becomes: .diverged))
        let records = try await second.records(waitingFor: "log.sink.diverged")
        let alert = try #require(records.first { $0["event"] as? String == "log.sink.diverged" })
        #expect((alert["reason"] as? String)?.contains("another gateway writes under this name") == true, "\(alert)")
        await second.stop()
        await first.stop()
        // The table holds the first gateway's chain only: seq 1 to its end, each once.
        let table = try await Self.rows(db, "SELECT count(*) = max(seq), max(seq) FROM mailgate_decisions")
        #expect(table.first?.hasPrefix("t|") == true, "\(table)")
        #expect((table.first?.split(separator: "|").last).flatMap { Int($0) } ?? 0 >= shipped)
        down.stop()
    }

    @Test func recordsRetentionDeletedDuringAnOutageAreAGapNotADivergence() async throws {
        let db = try await Self.database()
        let down = try await RecordingDownstream.start()
        let first = try await Self.gateway(db, name: "mx-r", down: down)
        _ = try await Client.smtplib(port: first.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: 1\r\n\r\nhi\r\n")
        _ = try await first.records(waitingFor: "session.close")
        _ = try await Self.shipped(first)
        await first.stop()
        let path = first.logPath
        // The database is out of reach while the log rotates and its rotated files are deleted.
        let cut = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], logPath: path) { c in
            c.log.postgres = "postgres://mailgate_writer@127.0.0.1:\(PostgresServer.freePort())/\(db)"
            c.log.gateway = "mx-r"
            c.log.rotation = LogRotation(maxOctets: 1500)
        }
        for i in 0..<3 {
            _ = try await Client.smtplib(port: cut.port, from: "a@example.net", to: ["c\(i)@example.org"], data: "Subject: 2\r\n\r\nhi\r\n")
        }
        _ = try await cut.records(waitingFor: "session.close", count: 3)
        await cut.stop()
        let rotated = LogFileSet.rotated(of: path)
        #expect(rotated.count >= 2)
        for f in rotated { try FileManager.default.removeItem(atPath: f) }
        let again = try await Self.gateway(db, name: "mx-r", down: down, logPath: path)
        let s = try await Self.shipped(again)
        #expect(s.state == .shipping)
        let gap = try #require(try await again.records(waitingFor: "log.sink.gap").first { $0["event"] as? String == "log.sink.gap" })
        await again.stop()
        let from = try #require(gap["from_seq"] as? Int), to = try #require(gap["to_seq"] as? Int)
        #expect(from <= to)
        let reader = try await PostgresServer.url(database: db, user: "mailgate_reader")
        let (vs, vout) = try await runProgram(CLITests.binary, ["log", "verify", "--postgres", reader])
        #expect(vs == 0, "\(vout)")
        #expect(vout.contains("NOTE mx-r: records \(from) to \(to) were deleted from the local log before they were shipped"), "\(vout)")
        down.stop()
    }

    @Test func aHostileChainEndInTheTableIsRefusedNotTrappedOn() async throws {
        let db = try await Self.database()
        try await PostgresServer.psql(database: db, ["-c", "INSERT INTO mailgate_decisions (gateway, seq, ts, event, line, hash) VALUES ('mx-h', -9223372036854775808, now(), 'e', '{}', 'h')"])
        let down = try await RecordingDownstream.start()
        let gw = try await Self.gateway(db, name: "mx-h", down: down)
        #expect(try await Self.state(gw, becomes: .diverged))
        #expect(gw.server.shared.logSink?.lag ?? -1 >= 0)
        await gw.stop()
        down.stop()
    }
}
