import Foundation
import Testing
@testable import Gateway
import DNSResolver

/// `metrics.listen`: Prometheus counters that move with the mail, and a health endpoint that
/// turns 503 when the gateway would tempfail.
@Suite struct MetricsTests {
    func curl(_ url: String) async throws -> (status: String, body: String) {
        let (rc, out) = try await runProgram("/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "--max-time", "10", url])
        #expect(rc == 0, "\(out)")
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }

    func value(_ body: String, _ series: String) -> Double? {
        body.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    @Test func countersMoveWithTheMailAndHealthFollowsTheDownstream() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].authorizedAddresses = [.init("192.0.2.0/24")!]
            c.metrics.listen = "127.0.0.1:0"
        }
        let port = try #require(gw.server.metricsAddress?.port)
        let base = "http://127.0.0.1:\(port)"
        let ok = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: x\r\n\r\nhi\r\n")
        #expect(ok["refused"] as? [String: Any] == nil || (ok["refused"] as? [String: Any])?.isEmpty == true, "\(ok)")
        _ = try await Client.raw(port: gw.port, [("EHLO c.example\r\n", 1), ("MAIL FROM:<a@example.net>\r\n", 1),
                                                 ("RCPT TO:<victim@example.com>\r\n", 1), ("QUIT\r\n", 1)])
        _ = try await gw.records(waitingFor: "session.close", count: 2)
        let first = try await curl(base + "/metrics")
        #expect(first.status == "200")
        #expect(value(first.body, "mailgate_transactions_total{outcome=\"accept\"}") == 1, "\(first.body)")
        #expect(value(first.body, "mailgate_connections_total{listener=\"smtp\"}") == 2)
        #expect(value(first.body, "mailgate_connections_open{listener=\"smtp\"}") == 0)
        #expect(value(first.body, "mailgate_verdicts_total{stage=\"rcpt\",check=\"relay\",action=\"reject\"}") == 1, "\(first.body)")
        #expect(value(first.body, "mailgate_downstream_delivery_seconds_count{target=\"smtp:127.0.0.1:\(down.port)\"}") == 1, "\(first.body)")
        #expect(value(first.body, "mailgate_log_healthy") == 1)
        // Another message: the counter moves.
        _ = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: y\r\n\r\nhi\r\n")
        let second = try await curl(base + "/metrics")
        #expect(value(second.body, "mailgate_transactions_total{outcome=\"accept\"}") == 2)

        let healthy = try await curl(base + "/health")
        #expect(healthy.status == "200")
        let h = try #require(try JSONSerialization.jsonObject(with: Data(healthy.body.utf8)) as? [String: Any])
        #expect(h["status"] as? String == "ok")
        #expect(((h["downstream"] as? [[String: Any]])?.first?["ok"] as? Bool) == true)
        down.stop()
        // /health answers from a result at most two seconds old.
        try await Task.sleep(for: .milliseconds(2100))
        let sick = try await curl(base + "/health")
        #expect(sick.status == "503", "\(sick)")
        #expect(sick.body.contains("\"status\":\"unhealthy\""))
        #expect(try await curl(base + "/nothing").status == "404")
        await gw.stop()
    }

    /// With a policy that asks DNS and greylists, /health asks the DNS servers and the store
    /// too, and turns 503 when the DNS servers stop answering.
    @Test func healthAsksTheDNSServersAndTheGreylistStore() async throws {
        // bl.test lists its RFC 5782 test point, broken.test does not: its self-test takes it out of service.
        let dns = try DNSFixtureServer(fixtures: "2.0.0.127.bl.test. 300 IN A 127.0.0.2\nbl.test. SOA 60\nbroken.test. SOA 60\n")
        try await dns.start()
        let dir = NSTemporaryDirectory() + "mg-health-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "name: h\nchecks:\n  dnsbl:\n    zones: [bl.test, broken.test]\n  greylist: {}\n".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.policy = dir + "/p.yaml"
            c.dns.servers = ["127.0.0.1:\(dns.port)"]
            c.dns.timeout = 0.5
            c.dns.attempts = 1
            c.metrics.listen = "127.0.0.1:0"
        }
        let base = "http://127.0.0.1:\(try #require(gw.server.metricsAddress?.port))"
        let ok = try await curl(base + "/health")
        #expect(ok.status == "200", "\(ok.body)")
        let h = try #require(try JSONSerialization.jsonObject(with: Data(ok.body.utf8)) as? [String: Any])
        #expect((h["dns"] as? [String: Any])?["ok"] as? Bool == true, "\(h)")
        #expect((h["greylist"] as? [String: Any])?["ok"] as? Bool == true, "\(h)")
        let m = try await curl(base + "/metrics")
        #expect(value(m.body, "mailgate_dnsbl_zone_in_service{zone=\"bl.test\"}") == 1, "\(m.body)")
        #expect(value(m.body, "mailgate_dnsbl_zone_in_service{zone=\"broken.test\"}") == 0, "\(m.body)")
        // The gateway's start record was written and fsynced: a batch was timed.
        #expect((value(m.body, "mailgate_log_write_seconds_count") ?? 0) >= 1, "\(m.body)")
        #expect((value(m.body, "mailgate_log_written_octets_total") ?? 0) > 0)
        await dns.stop()
        try await Task.sleep(for: .milliseconds(2100))
        let sick = try await curl(base + "/health")
        #expect(sick.status == "503", "\(sick.body)")
        let s = try #require(try JSONSerialization.jsonObject(with: Data(sick.body.utf8)) as? [String: Any])
        #expect((s["dns"] as? [String: Any])?["ok"] as? Bool == false)
        await gw.stop()
        down.stop()
    }
}
