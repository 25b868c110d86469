import Foundation
import Testing
import Checks
import PolicyEngine
import SMTPProtocol
@testable import Gateway

/// Every shipped policy test runs twice: through the simulator, and through a real gateway
/// session on a socket (from the test's own client address, added to the loopback
/// interface for the run), with the same checks and injected results. Verdict, reply and
/// the rules that fired must agree: the simulator cannot disagree with the gateway.
@Suite(.serialized) struct SimulatorParityTests {
    static let policies = CLITests.root.appendingPathComponent("policies").path

    /// What a session came to, as both sides can tell it.
    struct Verdict: Equatable, CustomStringConvertible {
        var action: String
        var reply: String?
        var rules: [String]
        init(action: String, reply: String?, rules: [String]) {
            self.action = action
            // Both runs share the policy's greylist store, the gateway's a moment later:
            // "try again in 300 seconds" there is "in 299" here. The wait is the clock's, not
            // a disagreement.
            self.reply = reply?.replacingOccurrences(of: #"in \d+ seconds"#, with: "in N seconds", options: .regularExpression)
            self.rules = rules
        }
        var description: String { "\(action) \(reply ?? "-") rules \(rules)" }
    }

    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")))
    func everyShippedPolicyTestGivesTheSameVerdictOnASocket() async throws {
        var compared = 0
        var added: Set<String> = []
        defer { for ip in added { _ = try? Process.run(URL(fileURLWithPath: "/usr/sbin/ip"), arguments: ["addr", "del", "\(ip)/32", "dev", "lo"]).waitUntilExit() } }
        for file in PolicyTestRunner.findTests(Self.policies) {
            try await PolicyTestRunner.withCases(file: file, factory: { CheckCatalog(resolver: $0) }) { policy, cases in
                for c in cases {
                    let ip = c.input.clientIP.description
                    if case .v4 = c.input.clientIP, !ip.hasPrefix("127."), !added.contains(ip) {
                        let (s, o) = try await runProgram("/usr/sbin/ip", ["addr", "add", "\(ip)/32", "dev", "lo"])
                        try #require(s == 0 || o.contains("File exists"), "ip addr add \(ip): \(o)")
                        added.insert(ip)
                    }
                    let sim = await PolicySimulator.run(policy, c.input)
                    let simulated = Verdict(action: sim.action, reply: sim.reply.map(\.summary), rules: sim.rulesFired)
                    let real = try await Self.onASocket(policy, c.input)
                    #expect(real == simulated, "\(file):\(c.line) \(c.name): gateway \(real), simulator \(simulated)")
                    compared += 1
                }
            }
        }
        #expect(compared >= 22)
        print("simulator parity: \(compared) shipped policy tests, the same verdict on a socket")
    }

    /// Runs the case's session against a gateway on loopback and reads its verdict from the
    /// replies and the decision log, as the simulator's client would.
    static func onASocket(_ policy: CompiledPolicy, _ input: SimulationInput) async throws -> Verdict {
        let down = try await RecordingDownstream.start()
        defer { down.stop() }
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.domains = input.localDomains
            c.listeners[0].helloName = .name("localhost")
            c.listeners[0].authorizedAddresses = input.authorizedAddresses
            c.listeners[0].maxmessagesize = input.maxMessageSize / 1024
            c.allowUntrustedRouting = input.allowUntrustedRouting
        }
        gw.server.policies.swap([gw.server.config.listeners[0].name: PolicySimulator.injecting(input.injected, into: policy)])
        let steps = Self.steps(input)
        let r = try await Client.raw(port: gw.port, steps.map { ($0, 1) } + [("QUIT\r\n", 1)], source: input.clientIP.description)
        let replies = [r.greeting] + r.replies.map { $0.first ?? "" }
        let records = try await gw.records(waitingFor: "session.close")
        await gw.stop()
        let rules = records.compactMap { rec -> String? in
            guard rec["event"] as? String == "verdict", rec["check"] as? String == "policy", let rule = rec["rule"] as? String,
                  rule != "thresholds" else { return nil }
            return rule
        }
        let reply = verdictReply(replies, input: input)
        let action = reply.map { $0.hasPrefix("4") ? "tempfail" : "reject" } ?? "accept"
        return Verdict(action: action, reply: reply, rules: rules)
    }

    static func steps(_ input: SimulationInput) -> [String] {
        var out: [String] = []
        let extended = input.helo != nil && input.heloVerb != "HELO"
        if let h = input.helo { out.append("\(input.heloVerb) \(h)\r\n") }
        guard let s = input.sender else { return out }
        out.append("MAIL FROM:<\(s)>\(extended ? input.message.map { " SIZE=\($0.count)" } ?? "" : "")\r\n")
        out += input.recipients.map { "RCPT TO:<\($0)>\r\n" }
        out.append("DATA\r\n")
        var text = String(decoding: input.message ?? Array("\r\n".utf8), as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        if text.hasSuffix("\n") { text.removeLast() }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasPrefix(".") ? "." + $0 : String($0) }
        out.append(lines.joined(separator: "\r\n") + "\r\n.\r\n")
        return out
    }

    /// The reply that decides, read as the simulator's client reads: the first refusal at
    /// connect, HELO or MAIL; the first refused recipient when none was taken; DATA; the end.
    static func verdictReply(_ replies: [String], input: SimulationInput) -> String? {
        func refused(_ r: String) -> Bool { !(r.hasPrefix("2") || r.hasPrefix("3")) }
        func first(_ r: String) -> String { String(r.split(separator: "\n").first ?? "") }
        var i = 0
        if refused(replies[0]) { return first(replies[0]) }
        i += 1
        if input.helo != nil { if refused(replies[i]) { return first(replies[i]) }; i += 1 }
        guard input.sender != nil else { return nil }
        if refused(replies[i]) { return first(replies[i]) }
        i += 1
        let rcpts = replies[i..<min(i + input.recipients.count, replies.count)]
        i += input.recipients.count
        if !rcpts.contains(where: { !refused($0) }) { return rcpts.first(where: refused).map(first) }
        if i < replies.count, !replies[i].hasPrefix("354") { return first(replies[i]) }
        i += 1
        guard i < replies.count else { return "no reply" }
        return refused(replies[i]) ? first(replies[i]) : nil
    }
}
