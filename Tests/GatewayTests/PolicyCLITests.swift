import Foundation
import Testing
import DNSResolver

/// `mailgate policy …` as a policy author runs it, and SIGHUP as an operator sends it.
@Suite struct PolicyCLITests {
    func run(_ args: [String], cwd: String? = nil) async throws -> (Int32, String) {
        try await runProgram(CLITests.binary, args, cwd: cwd)
    }

    /// A copy of the shipped policies and rules to change.
    func copyOfShipped() throws -> String {
        let dir = NSTemporaryDirectory() + "mg-shipped-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for d in ["policies", "rules"] {
            try FileManager.default.copyItem(atPath: CLITests.root.appendingPathComponent(d).path, toPath: dir + "/" + d)
        }
        return dir
    }

    @Test func theShippedPoliciesPassTheirTests() async throws {
        let (status, out) = try await run(["policy", "test", CLITests.root.appendingPathComponent("policies").path])
        #expect(status == 0, "\(out)")
        #expect(out.contains("\n0 failed") || out.hasSuffix(", 0 failed\n"), "\(out)")
        #expect(!out.contains("FAIL "))
    }

    @Test func aTestFailsWhenARuleActionChanges() async throws {
        let dir = try copyOfShipped()
        let rules = dir + "/rules/strict.rules"
        let text = try String(contentsOfFile: rules, encoding: .utf8)
        try text.replacingOccurrences(of: "reject 504 5.5.2", with: "tempfail 454 4.5.2").write(toFile: rules, atomically: true, encoding: .utf8)
        let (status, out) = try await run(["policy", "test", "policies"], cwd: dir)
        #expect(status == 1)
        #expect(out.contains("""
        FAIL policies/strict.test.yaml:21 an invalid HELO is refused, at RCPT so that the envelope is logged
             action: expected reject, got tempfail
             reply: expected 504 5.5.2 Helo command rejected: need fully-qualified hostname, got 454 4.5.2 Helo command rejected: need fully-qualified hostname
        """), "\(out)")
        #expect(out.hasSuffix("21 passed, 1 failed\n"), "\(out)")
    }

    @Test func policyCheckNamesTheFileLineAndColumnOfATypo() async throws {
        let dir = try copyOfShipped()
        let rules = dir + "/rules/helo.rules"
        let text = try String(contentsOfFile: rules, encoding: .utf8)
        try text.replacingOccurrences(of: "when helo.literal and", with: "when helo.litteral and").write(toFile: rules, atomically: true, encoding: .utf8)
        let (status, out) = try await run(["policy", "check", "policies/default.yaml", "policies/strict.yaml"], cwd: dir)
        #expect(status == 2)
        let strictVersion = out.split(separator: "\n").first { $0.hasPrefix("policies/strict.yaml: OK") }
        #expect(strictVersion != nil, "\(out)")
        #expect(out.contains("rules/helo.rules:8:8: unknown fact 'helo.litteral'; did you mean 'helo.literal'?\n"), "\(out)")
        // check-config refuses a configuration whose policy is invalid.
        try "policy: policies/default.yaml\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let (cs, co) = try await run(["check-config", "c.yaml"], cwd: dir)
        #expect(cs == 2)
        #expect(co == "rules/helo.rules:8:8: unknown fact 'helo.litteral'; did you mean 'helo.literal'?\n")
        // …and so does serve.
        let (ss, so) = try await run(["serve", "--config", "c.yaml"], cwd: dir)
        #expect(ss == 2)
        #expect(so.contains("rules/helo.rules:8:8: unknown fact 'helo.litteral'"), "\(so)")
        #expect(so.contains("the policy is invalid; not starting"))
    }

    @Test func simulateExplainsARefusalStageByStage() async throws {
        let root = CLITests.root.path
        // The strict policy asks DNS (rdns, helodns): from fixtures on loopback only.
        let dns = try DNSFixtureServer(fixtures: "7.100.51.198.in-addr.arpa. 300 IN PTR mail.example.net.\nmail.example.net. 300 IN A 198.51.100.7\n")
        try await dns.start()
        defer { Task { await dns.stop() } }
        let (status, out) = try await run(["policy", "simulate", "--policy", "policies/strict.yaml", "--ip", "198.51.100.7", "--dns", dns.address,
                                           "--helo", "[198.51.100.7]", "--from", "alice@example.net", "--rcpt", "bob@localhost"], cwd: root)
        #expect(status == 0, "\(out)")
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first?.hasPrefix("policy strict version ") == true)
        #expect(lines.contains("helo     EHLO [198.51.100.7]"))
        #expect(lines.contains("    rule helo-literal (rules/strict.rules:7): match -> defer 550 5.7.1 Helo command rejected: use your host name, not [198.51.100.7] [deferred to rcpt]"), "\(out)")
        #expect(lines.contains("        facts: helo.literal=true, client.authorized=false"))
        #expect(lines.contains("    check rdns: pass -> continue"), "\(out)")
        #expect(lines.contains("        why: the reverse name mail.example.net resolves back to the client"))
        #expect(lines.contains("rcpt     RCPT TO:<bob@localhost>"))
        #expect(lines.contains("    policy: deferred -> reject 550 5.7.1 Helo command rejected: use your host name, not [198.51.100.7]"))
        #expect(lines.contains("        why: decided at helo by rule helo-literal"))
        #expect(lines.contains("verdict: reject at rcpt: 550 5.7.1 Helo command rejected: use your host name, not [198.51.100.7]"))
    }

    /// The promise: a SIGHUP with a broken policy keeps the old one serving and logs why.
    @Test func sighupWithABrokenPolicyKeepsTheOldOneServing() async throws {
        let dir = try copyOfShipped()
        let port = try FaultTests.freePort()
        try "policy: policies/strict.yaml\nlisteners:\n  - bind: [\"127.0.0.1:\(port)\"]\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let p = try await CLITests.serve(dir: dir, port: port)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        // A bounce to two recipients: the second RCPT is refused by the shipped rule.
        let probe: [(String?, Int)] = [("EHLO client.example.org\r\n", 1), ("MAIL FROM:<>\r\n", 1),
                                       ("RCPT TO:<bob@localhost>\r\n", 1), ("RCPT TO:<carol@localhost>\r\n", 1)]
        let before = try await Client.raw(port: port, probe)
        #expect(before.replies[3].map(withoutID) == ["550 5.5.3 Multi-recipient bounce: a message from <> has one recipient"])

        let rules = dir + "/rules/base.rules"
        let good = try String(contentsOfFile: rules, encoding: .utf8)
        try good.replacingOccurrences(of: "reject 550 5.5.3", with: "rejekt 550 5.5.3").write(toFile: rules, atomically: true, encoding: .utf8)
        kill(p.processIdentifier, SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        #expect(p.isRunning)
        let during = try await Client.raw(port: port, probe)
        #expect(during.replies[3].map(withoutID) == ["550 5.5.3 Multi-recipient bounce: a message from <> has one recipient"])

        try good.replacingOccurrences(of: "\"Multi-recipient bounce: a message from <> has one recipient\"",
                                      with: "\"One recipient per bounce\"").write(toFile: rules, atomically: true, encoding: .utf8)
        kill(p.processIdentifier, SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        let after = try await Client.raw(port: port, probe)
        #expect(after.replies[3].map(withoutID) == ["550 5.5.3 One recipient per bounce"])

        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let (_, log) = try await run(["log", "query", "--event", "policy.reload", "--format", "json", "var/decisions.log"], cwd: dir)
        let reloads = log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(reloads.map { $0["result"] as? String } == ["refused", "ok"], "\(log)")
        let errors = reloads.first?["errors"] as? [String] ?? []
        #expect(errors == ["rules/base.rules:19:3: expected an action (accept, reject, tempfail, greylist, score, header, log) for rule \"multi-recipient-bounce\", found 'rejekt'"])
        #expect(reloads.first?["reason"] as? String == "the new policy does not compile; the running policy stays in force")
    }
}
