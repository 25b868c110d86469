import Foundation
import Testing
import DecisionLog
@testable import Gateway

/// Verdicts that did not act ride on the session's next record: a clean message is four
/// records, and every reader still sees each verdict.
@Suite struct FoldedChecksTests {
    static func lines(_ path: String) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        try LogReader.forEachLine(path: path) { l in
            if let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any] { out.append(o) }
        }
        return out
    }

    @Test func aCleanMessageIsFourRecordsAndItsVerdictsAreStillThere() async throws {
        let down = try await RecordingDownstream.start()
        // Loopback may relay here: the recipient's relay verdict says so without acting.
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.com"], data: "Subject: t\r\n\r\nhi\r\n")
        #expect(r["ok"] as? Bool == true, "\(r)")
        _ = try await gw.records(waitingFor: "session.close")
        await gw.stop()
        down.stop()
        let raw = try Self.lines(gw.logPath).filter { $0["session"] != nil }
        // Relaying allowed is the gateway's own decision: a record of its own, carrying what came before.
        #expect(raw.map { $0["event"] as? String ?? "" } == ["session.open", "verdict", "transaction.commit", "transaction", "session.close"])
        #expect(raw[1]["check"] as? String == "relay" && raw[1]["result"] as? String == "authorized")
        #expect((raw[1]["checks"] as? [[Any]])?.map { "\($0[0])/\($0[1])=\($0[2])" } == ["helo/helo=skipped", "mail/size=unlimited"])
        let folded = try #require(raw[2]["checks"] as? [[Any]])
        #expect(folded.map { "\($0[0])/\($0[1])=\($0[2])" } == ["message/size=unlimited"])
        // The HELO name and the sender ride with their stage's entry.
        let first = try #require(raw[1]["checks"] as? [[Any]])
        #expect(first[0].last as? String == "client.example.org")
        #expect(first[1].last as? String == "a@example.net")
        // Readers see the verdicts as records of their own.
        let expanded = try #require(try await gw.records().filter { $0["event"] as? String == "verdict" })
        let size = try #require(expanded.first { $0["check"] as? String == "size" && $0["stage"] as? String == "mail" })
        #expect(size["action"] as? String == "continue" && size["sender"] as? String == "a@example.net" && size["folded"] as? Bool == true)
        #expect(size["session"] as? String == raw[0]["session"] as? String && size["client"] as? String == "127.0.0.1")
        let (ss, sout) = try await runProgram(CLITests.binary, ["log", "query", "--sender", "a@example.net", "--check", "size", gw.logPath])
        #expect(ss == 0 && sout.contains("mail/size=unlimited"), "\(sout)")
        let (status, out) = try await runProgram(CLITests.binary, ["log", "query", "--check", "size", "--stage", "message", gw.logPath])
        #expect(status == 0)
        #expect(out.split(separator: "\n").filter { $0.contains("  verdict  ") }.count == 1 && out.contains("message/size=unlimited  continue"), "\(out)")
        #expect(out.contains("1 records\n"))
        let (js, json) = try await runProgram(CLITests.binary, ["log", "query", "--action", "continue", "--format", "json", gw.logPath])
        #expect(js == 0)
        #expect(json.split(separator: "\n").count == 2, "the relay verdict and the commit carrying the message size: \(json)")
    }

    @Test func anActingVerdictIsARecordAndCarriesWhatCameBefore() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
        }
        _ = try await Client.raw(port: gw.port, [("EHLO c.example.net\r\n", 1), ("MAIL FROM:<x@example.net>\r\n", 1), ("RCPT TO:<v@example.com>\r\n", 1), ("QUIT\r\n", 1)])
        _ = try await gw.records(waitingFor: "session.close")
        await gw.stop()
        down.stop()
        let raw = try Self.lines(gw.logPath).filter { $0["session"] != nil }
        #expect(raw.map { $0["event"] as? String ?? "" } == ["session.open", "verdict", "session.close"])
        #expect(raw[1]["check"] as? String == "relay" && raw[1]["action"] as? String == "reject")
        #expect((raw[1]["checks"] as? [[Any]])?.map { "\($0[0])/\($0[1])" } == ["helo/helo", "mail/size"])
        // The octet prefilter finds the carrier by its own action, and folded entries by stage and check.
        for (args, want) in [(["--action", "reject"], ["rcpt/relay=denied"]), (["--stage", "mail", "--check", "size"], ["mail/size=unlimited"]),
                             (["--event", "verdict", "--stage", "helo"], ["helo/helo=pass"]), (["--action", "accept"], [])] {
            let (status, out) = try await runProgram(CLITests.binary, ["log", "query"] + args + [gw.logPath])
            #expect(status == 0)
            let found = out.split(separator: "\n").filter { $0.contains("  verdict  ") }.compactMap { $0.split(separator: " ").first { $0.contains("=") } }.map(String.init)
            #expect(found == want, "\(args): \(out)")
        }
        let (rs, report) = try await runProgram(CLITests.binary, ["log", "report", gw.logPath])
        #expect(rs == 0)
        // The HELO name rode on the refusal's own line.
        #expect(report.contains("HELO names most refused or deferred\n                 count\n  c.example.net      1\n"), "\(report)")
    }

    @Test func verdictsThatNeverMeetARecordAreWrittenInBoundedBatches() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
        }
        // MAIL, RCPT, RSET over and over: a verdict each (the sender's size), and no other record.
        var steps: [(String, Int)] = [("EHLO c.example.net\r\n", 1)]
        for i in 0..<40 { steps += [("MAIL FROM:<x\(i)@example.net>\r\n", 1), ("RCPT TO:<b@example.org>\r\n", 1), ("RSET\r\n", 1)] }
        _ = try await Client.raw(port: gw.port, steps + [("QUIT\r\n", 1)])
        _ = try await gw.records(waitingFor: "session.close")
        await gw.stop()
        down.stop()
        let raw = try Self.lines(gw.logPath).filter { $0["session"] != nil }
        #expect(raw.map { $0["event"] as? String ?? "" } == ["session.open", "checks", "session.close"])
        #expect((raw[1]["checks"] as? [Any])?.count == Session.maxFoldedChecks)
        #expect((raw[2]["checks"] as? [Any])?.count == 41 - Session.maxFoldedChecks)
        #expect(try await gw.records().filter { $0["event"] as? String == "verdict" }.count == 41)
    }
}
