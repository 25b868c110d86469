import Foundation
import Testing
@testable import Gateway

/// DSN (RFC 3461) end to end: advertised only when the downstream offers it, and its
/// parameters passed on unchanged and logged.
@Suite(.serialized) struct DSNGatewayTests {
    /// The gateway learns what the downstream offers from its first connection there.
    static func warmUp(_ gw: TestGateway) async throws {
        #expect(!gw.server.shared.forwarder.allTargetsOffer("DSN"), "nothing is known before the first connection")
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: first\r\n\r\nx\r\n")
        #expect(r["ok"] as? Bool == true)
    }

    @Test func dsnParametersReachADownstreamThatOffersDSN() async throws {
        let down = try await RecordingDownstream.start(dsn: true)
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        try await Self.warmUp(gw)
        let r = try await Client.raw(port: gw.port, [
            ("EHLO a.example\r\n", 1), ("MAIL FROM:<a@example.net> RET=HDRS ENVID=QQ+2B314159\r\n", 1),
            ("RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\r\n", 1), ("RCPT TO:<c@example.org>\r\n", 1),
            ("DATA\r\n", 1), ("Subject: dsn\r\n\r\nx\r\n.\r\n", 1), ("QUIT\r\n", 1),
        ])
        #expect(r.replies[0].first?.contains("\n250-DSN\n") == true, "\(r.replies[0])")
        #expect(r.replies[5].first?.hasPrefix("250 ") == true, "\(r.replies)")
        #expect(down.messages.count == 2)
        let lines = down.messages.last?.lines ?? []
        #expect(lines.count == 3)
        #expect(lines.first?.hasSuffix(" RET=HDRS ENVID=QQ+2B314159") == true, "\(lines)")
        #expect(lines.dropFirst().first == "RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org")
        #expect(lines.last == "RCPT TO:<c@example.org>")
        let records = try await gw.records(waitingFor: "session.close", count: 2)
        let txn = try #require(records.last { $0["event"] as? String == "transaction" })
        let dsn = txn["dsn"] as? [String: Any]
        #expect(dsn?["ret"] as? String == "HDRS")
        #expect(dsn?["envid"] as? String == "QQ+2B314159")
        #expect((dsn?["recipients"] as? [[String: Any]])?.first?["notify"] as? String == "SUCCESS,FAILURE")
        await gw.stop()
        down.stop()
    }

    @Test func withoutDSNDownstreamItIsNotOfferedAndItsParametersAreRefused() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        try await Self.warmUp(gw)
        let r = try await Client.raw(port: gw.port, [("EHLO a.example\r\n", 1), ("MAIL FROM:<a@example.net> RET=FULL\r\n", 1)])
        #expect(r.replies[0].first?.contains("DSN") == false)
        #expect(r.replies[1] == ["555 5.5.4 Unsupported MAIL parameter RET"])
        await gw.stop()
        down.stop()
    }
}
