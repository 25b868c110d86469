import Foundation
import Testing
import DecisionLog
import PolicyEngine
import SMTPProtocol
@testable import Gateway

/// A check that adds a header and a score at end of data.
struct TagCheck: Check {
    let name = "tag"
    let stages: Set<Stage> = [.message]
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        CheckResult(.continue, result: "tagged", reason: "size \(context.messageSize)", score: 2.5,
                    headers: [HeaderField("X-MailGate-Test", "tagged by \(context.sessionID.prefix(4))…")])
    }
}

/// Refuses at "data" (headers complete) when the Subject says so.
struct SubjectCheck: Check {
    let name = "subject"
    let stages: Set<Stage> = [.data]
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        let subject = context.headers.first { $0.name.lowercased() == "subject" }?.value ?? ""
        if subject.contains("BUY NOW") {
            return CheckResult(.reject(SMTPReply(554, "5.7.1", "Spam refused")), result: "spam", reason: "subject: \(subject)")
        }
        return .pass("pass", reason: "subject: \(subject)")
    }
}

@Suite struct PipelineStageTests {
    @Test func checkHeadersReachTheDownstreamBelowReceived() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], checks: [TagCheck()])
        let body = "Subject: fine\r\n\r\nhello\r\n"
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: body)
        #expect(r["ok"] as? Bool == true, "\(r)")
        let text = String(decoding: try #require(down.messages.first).data, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        #expect(lines[0].hasPrefix("Received: from client.example.org"))
        let tagLine = try #require(lines.firstIndex { $0.hasPrefix("X-MailGate-Test: tagged by ") })
        #expect(lines[tagLine + 1] == "Subject: fine", "added headers sit between Received and the message")
        #expect(text.hasSuffix(body))
        let records = try await gw.records(waitingFor: "session.close")
        let v = try #require(records.first { $0["check"] as? String == "tag" })
        #expect(v["stage"] as? String == "message")
        #expect(v["score"] as? Double == 2.5)
        let t = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(t["score"] as? Double == 2.5)
        await gw.stop()
        down.stop()
    }

    @Test func dataStageRejectIsAnsweredAfterTheFinalDot() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], checks: [SubjectCheck()])
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            ("Subject: BUY NOW\r\n\r\nbody line\r\n.\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 3),
            ("Subject: hello\r\n\r\nbody\r\n.\r\n", 1),
        ])
        #expect(d.replies[1] == ["554 5.7.1 Spam refused"])
        #expect(d.replies[3] == ["250 2.0.0 Ok: queued as TEST1"])
        #expect(down.messages.count == 1)
        let records = try await gw.records()
        let v = try #require(records.first { $0["check"] as? String == "subject" && $0["action"] as? String == "reject" })
        #expect(v["stage"] as? String == "data")
        #expect(v["reason"] as? String == "subject: BUY NOW")
        let txns = records.filter { $0["event"] as? String == "transaction" }
        #expect(txns.map { $0["action"] as? String ?? "" } == ["reject", "accept"])
        await gw.stop()
        down.stop()
    }

    /// "If the log cannot be written, the gateway tempfails rather than accepts unlogged
    /// mail": /dev/full fails every write with ENOSPC.
    @Test func unwritableLogTempfailsMail() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], logPath: "/dev/full")
        // The first records (session open, HELO verdict) fail to be written…
        _ = try await Client.raw(port: gw.port, [("EHLO client.example.org\r\nQUIT\r\n", 2)])
        for _ in 0..<200 where gw.log.isHealthy { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!gw.log.isHealthy)
        // …and from then on no message is taken that could not be logged.
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            ("RSET\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
        ])
        #expect(d.replies[0].last == "451 4.3.0 Local error: decision log unavailable, try again later")
        #expect(d.replies[1].last == "451 4.3.0 Local error: decision log unavailable, try again later")
        #expect(down.messages.isEmpty)
        await gw.server.shutdown(grace: .seconds(1))
        down.stop()
    }
}
