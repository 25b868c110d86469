import Foundation
import Testing
import DecisionLog
import PolicyEngine
import SMTPProtocol
@testable import Gateway

/// Policies in the running gateway: real clients, exact replies, exact log records.
@Suite struct PolicyGatewayTests {
    /// Writes a policy with the given rules into a fresh directory; returns the policy path.
    static func policy(_ rules: String, settings: String = "") throws -> String {
        let dir = NSTemporaryDirectory() + "mg-gwpolicy-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "name: test\nchecks: [size, helo]\nrules: [r.rules]\n\(settings)".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        try rules.write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
        return dir + "/p.yaml"
    }

    @Test func deferredRejectionRefusesAtRcptLogsTheEnvelopeAndLetsPostmasterThrough() async throws {
        let path = try Self.policy("""
        rule lab-network at connect defer
          when client.ip == "127.0.0.1"
          reject 554 5.7.1 "Service unavailable; client [{client.ip}] blocked"
        """)
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.policy = path }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:<spammer@example.net>\r\n", 1),
            ("RCPT TO:<bob@example.org>\r\n", 1),
            ("RCPT TO:<postmaster@example.org>\r\n", 1),
            ("DATA\r\n", 1),
            ("Subject: hi\r\n\r\nto the postmaster\r\n.\r\n", 1),
            ("QUIT\r\n", 1),
        ])
        #expect(d.greeting.hasPrefix("220 "))
        #expect(d.replies[1] == ["250 2.1.0 Sender <spammer@example.net> OK"])
        #expect(d.replies[2] == ["554 5.7.1 Service unavailable; client [127.0.0.1] blocked"])
        #expect(d.replies[3] == ["250 2.1.5 Recipient <postmaster@example.org> OK"])
        #expect(d.replies[5].first?.hasPrefix("250 ") == true)
        #expect(down.messages.map(\.rcpts) == [["postmaster@example.org"]])

        let records = try await gw.records(waitingFor: "session.close")
        let version = try #require(gw.server.policy(listener: "smtp")?.version)
        let decided = try #require(records.first { $0["rule"] as? String == "lab-network" })
        #expect(decided["stage"] as? String == "connect")
        #expect(decided["action"] as? String == "defer")
        #expect(decided["deferred_to"] as? String == "rcpt")
        #expect(decided["reply"] as? String == "554 5.7.1 Service unavailable; client [127.0.0.1] blocked")
        #expect(decided["policy"] as? String == "test")
        #expect(decided["policy_version"] as? String == version)
        let given = try #require(records.first { $0["result"] as? String == "deferred" })
        #expect(given["stage"] as? String == "rcpt")
        #expect(given["action"] as? String == "reject")
        #expect(given["sender"] as? String == "spammer@example.net")
        #expect(given["recipient"] as? String == "bob@example.org")
        #expect(given["reason"] as? String == "decided at connect by rule lab-network")
        let exempt = try #require(records.first { $0["result"] as? String == "postmaster" })
        #expect(exempt["recipient"] as? String == "postmaster@example.org")
        let open = try #require(records.first { $0["event"] as? String == "session.open" })
        #expect(open["policy_version"] as? String == version)
        let txn = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(txn["policy"] as? String == "test")
        await gw.stop()
        down.stop()
    }

    @Test func monitorModeDeliversAndRecordsWhatWouldHaveHappened() async throws {
        let path = try Self.policy("""
        rule no-subject-hi at data
          when header("Subject") == "hi"
          reject 550 5.7.1 "We do not like {header(\\"x\\")}"
        """.replacingOccurrences(of: "{header(\\\"x\\\")}", with: "greetings"), settings: "monitor: true\n")
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.policy = path }
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: hi\r\n\r\nx\r\n")
        #expect(r["ok"] as? Bool == true, "\(r)")
        #expect(down.messages.count == 1)
        let records = try await gw.records(waitingFor: "session.close")
        let v = try #require(records.first { $0["rule"] as? String == "no-subject-hi" })
        #expect(v["action"] as? String == "continue")
        #expect(v["monitor"] as? Bool == true)
        #expect(v["would"] as? String == "reject 550 5.7.1 We do not like greetings")
        let txn = try #require(records.first { $0["event"] as? String == "transaction" })
        #expect(txn["action"] as? String == "accept")
        await gw.stop()
        down.stop()
    }

    @Test func rulesAddHeadersAndThresholdsRefuseAfterTheDot() async throws {
        let path = try Self.policy("""
        rule offer at data when header("Subject") contains "offer" score +5 header "X-Offer" "yes, from {client.ip}"
        rule offered-before at data when header("X-Offer") != "" score +5
        """, settings: "thresholds: {header: 1, reject: 8}\n")
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.policy = path }
        let ok = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: an offer\r\n\r\nx\r\n")
        #expect(ok["ok"] as? Bool == true, "\(ok)")
        let text = String(decoding: try #require(down.messages.first).data, as: UTF8.self)
        #expect(text.contains("\r\nX-Offer: yes, from 127.0.0.1\r\nX-Spam-Flag: YES\r\nX-Spam-Score: 5\r\nSubject: an offer\r\n"), "\(text)")
        let d = try await Client.raw(port: gw.port, [
            ("EHLO x.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            ("Subject: offer offer\r\nX-Offer: 1\r\n\r\nx\r\n.\r\n", 1),
        ])
        #expect(d.replies.last == ["550 5.7.1 Message refused as spam (score 10)"], "\(d)")
        #expect(down.messages.count == 1)
        await gw.stop()
        down.stop()
    }

    @Test func reloadRefusesABrokenPolicyKeepsTheOldAndTakesAFixedOne() async throws {
        let path = try Self.policy("rule r1 at rcpt when recipient.local == \"nobody\" reject 550 5.1.1 \"No such user\"\n")
        let dir = (path as NSString).deletingLastPathComponent
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.policy = path }
        let v1 = try #require(gw.server.policy(listener: "smtp")?.version)

        // A typo: refused with its place; the old policy keeps serving.
        try "rule r1 at rcpt when recipient.locl == \"nobody\" reject 550 5.1.1 \"Gone\"\n".write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
        let errors = gw.server.reloadPolicies()
        #expect(errors == ["\(dir)/r.rules:1:22: unknown fact 'recipient.locl'; did you mean 'recipient.local'?"])
        #expect(gw.server.policy(listener: "smtp")?.version == v1)
        let d1 = try await Client.raw(port: gw.port, [("EHLO x.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<nobody@example.org>\r\n", 3)])
        #expect(d1.replies.first?.last == "550 5.1.1 No such user", "\(d1)")

        // Fixed: the new version serves new sessions.
        try "rule r1 at rcpt when recipient.local == \"nobody\" reject 550 5.1.1 \"Gone\"\n".write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
        #expect(gw.server.reloadPolicies() == [])
        let v2 = try #require(gw.server.policy(listener: "smtp")?.version)
        #expect(v2 != v1)
        let d2 = try await Client.raw(port: gw.port, [("EHLO x.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<nobody@example.org>\r\n", 3)])
        #expect(d2.replies.first?.last == "550 5.1.1 Gone", "\(d2)")

        let records = try await gw.records(waitingFor: "session.close", count: 2)
        let reloads = records.filter { $0["event"] as? String == "policy.reload" }
        #expect(reloads.map { $0["result"] as? String } == ["refused", "ok"])
        #expect(reloads[0]["errors"] as? [String] == errors)
        #expect(reloads[0]["running"] as? [String] == ["smtp: test \(v1)"])
        #expect(reloads[1]["policy_version"] as? String == v2)
        #expect(reloads[1]["previous_version"] as? String == v1)
        let refusals = records.filter { $0["rule"] as? String == "r1" }.map { $0["policy_version"] as? String }
        #expect(refusals == [v1, v2])
        await gw.stop()
        down.stop()
    }

    @Test func aSessionInFlightFinishesUnderThePolicyItStartedWith() async throws {
        let path = try Self.policy("rule r1 at rcpt when recipient.local == \"nobody\" reject 550 5.1.1 \"Old\"\n")
        let dir = (path as NSString).deletingLastPathComponent
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.policy = path }
        // The reload happens while the client is connected (between its steps).
        let reloader = Task {
            // Once the client's session is open (and before it sends MAIL).
            for _ in 0..<200 where gw.server.activeSessions == 0 { try await Task.sleep(for: .milliseconds(10)) }
            try "rule r1 at rcpt when recipient.local == \"nobody\" reject 550 5.1.1 \"New\"\n".write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
            return gw.server.reloadPolicies()
        }
        // The client says EHLO, waits two seconds (the reload happens), then sends MAIL and RCPT.
        let d = try await Client.run("raw", ["port": gw.port, "timeout": 10, "steps": [
            ["send": "EHLO x.example.org\r\n", "replies": 1],
            ["sleep": 2.0, "send": "MAIL FROM:<a@example.net>\r\nRCPT TO:<nobody@example.org>\r\n", "replies": 2],
        ]])
        #expect((d["replies"] as? [[String]])?.last == ["250 2.1.0 Sender <a@example.net> OK", "550 5.1.1 Old"], "\(d)")
        let errs = try await reloader.value
        #expect(errs == [])
        // A session opened after the reload says New; each refusal carries the version its
        // session opened with.
        let d2 = try await Client.raw(port: gw.port, [("EHLO x.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<nobody@example.org>\r\n", 3)])
        #expect(d2.replies.first?.last == "550 5.1.1 New", "\(d2)")
        let records = try await gw.records(waitingFor: "session.close", count: 2)
        for r in records where r["rule"] as? String == "r1" {
            let open = records.first { $0["event"] as? String == "session.open" && $0["session"] as? String == r["session"] as? String }
            #expect(open?["policy_version"] as? String == r["policy_version"] as? String)
        }
        await gw.stop()
        down.stop()
    }

    @Test func anInvalidPolicyStopsTheGatewayFromStarting() async throws {
        let path = try Self.policy("rule r1 at rcpt when recipient.locl == \"x\" reject\n")
        var c = GatewayConfig()
        c.policy = path
        c.log.path = NSTemporaryDirectory() + "mg-inv-" + UUID().uuidString + ".log"
        let log = try DecisionLog(path: c.log.path, durability: .groupCommit(milliseconds: 1))
        #expect(throws: PolicyErrors.self) { try GatewayServer(config: c, log: log) }
        log.close()
    }

    @Test func configRefusesHeloSettingsThatNoListenerReads() throws {
        let yaml = "policy: policies/default.yaml\nchecks:\n  timeout: 5\n  helo: {reject: false}\n"
        do {
            _ = try ConfigLoader.parse(yaml, file: "t.yaml")
            Issue.record("accepted")
        } catch let e as [ConfigError] {
            #expect(e.map(\.description) == ["t.yaml:4: checks.helo applies only to listeners without a policy; set the helo check's settings in the policy"])
        }
    }

    @Test func configRefusesAHandlerchainBesideAPolicy() throws {
        let yaml = "policy: policies/default.yaml\nlisteners:\n  - name: a\n    handlerchain: [size]\n"
        do {
            _ = try ConfigLoader.parse(yaml, file: "t.yaml")
            Issue.record("accepted")
        } catch let e as [ConfigError] {
            #expect(e.map(\.description) == ["t.yaml:3: listener 'a' sets a handlerchain and runs policy policies/default.yaml: the policy chooses the checks; remove one"])
        }
    }
}

extension PolicyGatewayTests {
    @Test func policyWatchReloadsWhenAFileChanges() async throws {
        let path = try Self.policy("rule r1 at rcpt when recipient.local == \"nobody\" reject 550 5.1.1 \"Old\"\n")
        let dir = (path as NSString).deletingLastPathComponent
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { $0.policy = path; $0.policyWatch = 1 }
        let v1 = try #require(gw.server.policy(listener: "smtp")?.version)
        try await Task.sleep(for: .milliseconds(1100))
        try "rule r1 at rcpt when recipient.local == \"nobody\" reject 550 5.1.1 \"Newer\"\n".write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
        var v2 = v1
        for _ in 0..<100 where v2 == v1 {
            try await Task.sleep(for: .milliseconds(100))
            v2 = gw.server.policy(listener: "smtp")?.version ?? v1
        }
        #expect(v2 != v1)
        let records = try await gw.records(waitingFor: "policy.reload")
        let reload = try #require(records.first { $0["event"] as? String == "policy.reload" })
        #expect(reload["trigger"] as? String == "file-change")
        #expect(reload["result"] as? String == "ok")
        await gw.stop()
        down.stop()
    }
}
