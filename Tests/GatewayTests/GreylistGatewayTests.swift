import Foundation
import Testing
import NIOConcurrencyHelpers
import DecisionLog
import Greylist
import PostgresTestServer
import SMTPProtocol
@testable import Gateway

/// A clock the test moves: greylisting's delay, window and lifetime without sleeping.
final class TestClock: Sendable {
    private let t = NIOLockedValueBox<Int64>(1_800_000_000)
    var now: @Sendable () -> Int64 { { [t] in t.withLockedValue { $0 } } }
    func advance(_ s: Int64) { t.withLockedValue { $0 += s } }
}

enum GreylistBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgresql
    var testDescription: String { rawValue }

    /// A store of its own for one test (PostgreSQL: a database of its own).
    func config(_ dir: String) async throws -> GreylistConfig {
        var g = GreylistConfig()
        switch self {
        case .sqlite:
            g.path = dir + "/greylist.sqlite"
        case .postgresql:
            let base = try await PostgresServer.url()
            let db = "mg_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
            try await PostgresServer.createDatabase(String(db))
            g.store = .postgresql
            g.url = String(base[..<base.lastIndex(of: "/")!]) + "/" + db
        }
        return g
    }
}

@Suite struct GreylistGatewayTests {
    static let message = "From: a@example.net\r\nTo: b@example.org\r\nSubject: grey\r\n\r\nretried\r\n"

    /// A policy directory with the greylist check (settings as given) and optional rules.
    static func policy(_ settings: String, rules: String? = nil, lists: [String: String] = [:]) throws -> String {
        let dir = NSTemporaryDirectory() + "mg-grey-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var y = "name: grey\nchecks:\n  greylist: {\(settings)}\n"
        if let r = rules {
            y += "rules: [r.rules]\n"
            try r.write(toFile: dir + "/r.rules", atomically: true, encoding: .utf8)
        }
        for (name, text) in lists { try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8) }
        try y.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        return dir + "/p.yaml"
    }

    static func gateway(_ down: RecordingDownstream, policy: String, greylist: GreylistConfig, clock: TestClock,
                        authorized: [String] = ["192.0.2.0/24"]) async throws -> TestGateway {
        try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], clock: clock) {
            $0.policy = policy
            $0.greylist = greylist
            // 127.0.0.1 is a stranger here, as a client from the internet would be.
            $0.listeners[0].authorizedAddresses = authorized.compactMap { IPNetwork($0) }
        }
    }

    static func send(_ gw: TestGateway, from: String = "a@example.net", to: [String] = ["b@example.org"]) async throws -> [String: Any] {
        try await Client.smtplib(port: gw.port, from: from, to: to, data: message)
    }

    static func refused(_ r: [String: Any], _ who: String) -> String? {
        guard let m = (r["refused"] as? [String: Any])?[who] as? [Any], let code = m.first as? Int, let text = m.last as? String else { return nil }
        return "\(code) \(text)"
    }

    @Test(arguments: GreylistBackend.allCases) func firstSightIsGreylistedAndARetryAfterTheDelayIsDelivered(_ b: GreylistBackend) async throws {
        let clock = TestClock()
        let down = try await RecordingDownstream.start()
        let scratch = NSTemporaryDirectory() + "mg-greystore-" + UUID().uuidString
        let gw = try await Self.gateway(down, policy: try Self.policy(""), greylist: try await b.config(scratch), clock: clock)

        let first = try await Self.send(gw)
        #expect(first["error"] as? String == "recipients", "\(first)")
        #expect(Self.refused(first, "b@example.org") == "451 4.7.1 Greylisted: please try again in 300 seconds")
        clock.advance(120)
        let early = try await Self.send(gw)
        #expect(Self.refused(early, "b@example.org") == "451 4.7.1 Greylisted: please try again in 180 seconds")
        #expect(down.messages.isEmpty)
        clock.advance(181)
        // A retry with a BATV-tagged sender is the same triplet.
        let retry = try await Self.send(gw, from: "prvs=0123abcd=a@example.net")
        #expect(retry["ok"] as? Bool == true, "\(retry)")
        #expect(down.messages.count == 1)
        let m = try #require(down.messages.first)
        #expect(m.mailFrom == "prvs=0123abcd=a@example.net")
        #expect(m.rcpts == ["b@example.org"])
        #expect(String(decoding: m.data, as: UTF8.self).hasSuffix(Self.message))
        // Known from now on.
        clock.advance(86_400)
        #expect(try await Self.send(gw)["ok"] as? Bool == true)

        let records = try await gw.records(waitingFor: "session.close", count: 4)
        let grey = records.filter { $0["check"] as? String == "greylist" }
        #expect(grey.map { $0["result"] as? String ?? "" } == ["new", "early", "passed", "known"])
        #expect(grey.map { $0["action"] as? String ?? "" } == ["tempfail", "tempfail", "continue", "continue"])
        #expect(grey[0]["reply"] as? String == "451 4.7.1 Greylisted: please try again in 300 seconds")
        #expect(grey[0]["reason"] as? String == "triplet 127.0.0.0/24/a@example.net/b@example.org first seen; a retry passes in 300 s")
        #expect(grey[0]["stage"] as? String == "rcpt")
        #expect(grey[0]["recipient"] as? String == "b@example.org")
        #expect(grey[2]["reason"] as? String == "triplet 127.0.0.0/24/a@example.net/b@example.org retried in time")
        let stats = try await gw.server.greylist.store().stats(settings: GreylistSettings())
        #expect(stats == GreylistStats(pending: 0, passed: 1, clients: 1, allowedClients: 0))
        await gw.stop()
        down.stop()
    }

    @Test(arguments: GreylistBackend.allCases) func exemptClientsAndRecipientsAreNeverDelayed(_ b: GreylistBackend) async throws {
        let clock = TestClock()
        let down = try await RecordingDownstream.start()
        let scratch = NSTemporaryDirectory() + "mg-greystore-" + UUID().uuidString
        let store = try await b.config(scratch)
        // An allow-listed network.
        let allowPolicy = try Self.policy("allow: {clients: clients.txt}", lists: ["clients.txt": "# our partners\n127.0.0.0/8\n"])
        var gw = try await Self.gateway(down, policy: allowPolicy, greylist: store, clock: clock)
        #expect(try await Self.send(gw)["ok"] as? Bool == true)
        var records = try await gw.records(waitingFor: "session.close")
        #expect(records.first { $0["check"] as? String == "greylist" }?["reason"] as? String == "client in allow list (127.0.0.0/8)")
        await gw.stop()

        // postmaster and abuse, and an allow-listed sender domain.
        let plain = try Self.policy("allow: {senderDomains: senders.txt}", lists: ["senders.txt": "partner.example\n"])
        gw = try await Self.gateway(down, policy: plain, greylist: store, clock: clock)
        #expect(try await Self.send(gw, to: ["postmaster@example.org", "abuse@example.org"])["ok"] as? Bool == true)
        #expect(try await Self.send(gw, from: "news@mx.partner.example")["ok"] as? Bool == true)
        // A stranger to someone else is still greylisted by the same gateway.
        #expect(Self.refused(try await Self.send(gw), "b@example.org") == "451 4.7.1 Greylisted: please try again in 300 seconds")
        records = try await gw.records(waitingFor: "session.close", count: 3)
        let reasons = records.filter { $0["check"] as? String == "greylist" }.map { $0["reason"] as? String ?? "" }
        #expect(reasons.prefix(3) == ["recipient postmaster@example.org is never greylisted", "recipient abuse@example.org is never greylisted",
                                      "sender domain mx.partner.example in allow list (partner.example)"])
        await gw.stop()

        // authorizedAddresses.
        gw = try await Self.gateway(down, policy: plain, greylist: store, clock: clock, authorized: ["127.0.0.0/8"])
        #expect(try await Self.send(gw, from: "c@example.net")["ok"] as? Bool == true)
        records = try await gw.records(waitingFor: "session.close")
        #expect(records.first { $0["check"] as? String == "greylist" }?["reason"] as? String == "client in authorizedAddresses")
        await gw.stop()
        #expect(down.messages.count == 4)
        down.stop()
    }

    @Test func twoGatewaysSharingPostgreSQLSeeTheSameTriplets() async throws {
        let clock = TestClock()
        let down = try await RecordingDownstream.start()
        let store = try await GreylistBackend.postgresql.config("")
        let policy = try Self.policy("")
        let a = try await Self.gateway(down, policy: policy, greylist: store, clock: clock)
        let b = try await Self.gateway(down, policy: policy, greylist: store, clock: clock)
        #expect(Self.refused(try await Self.send(a), "b@example.org") == "451 4.7.1 Greylisted: please try again in 300 seconds")
        clock.advance(60)
        // The other gateway knows the triplet: early, not new.
        #expect(Self.refused(try await Self.send(b), "b@example.org") == "451 4.7.1 Greylisted: please try again in 240 seconds")
        clock.advance(240)
        #expect(try await Self.send(b)["ok"] as? Bool == true)
        #expect(try await Self.send(a)["ok"] as? Bool == true)
        #expect(down.messages.count == 2)
        await a.stop()
        await b.stop()
        down.stop()
    }

    @Test func byRuleOnlyTheClientsARuleNames() async throws {
        let clock = TestClock()
        let down = try await RecordingDownstream.start()
        let policy = try Self.policy("mode: rules", rules: """
        rule grey-strangers at rcpt
          when sender.domain != "friend.example"
          greylist
        """)
        let gw = try await Self.gateway(down, policy: policy, greylist: .memory, clock: clock)
        #expect(try await Self.send(gw, from: "x@friend.example")["ok"] as? Bool == true)
        #expect(Self.refused(try await Self.send(gw), "b@example.org") == "451 4.7.1 Greylisted: please try again in 300 seconds")
        let records = try await gw.records(waitingFor: "session.close", count: 2)
        let fired = try #require(records.first { $0["rule"] as? String == "grey-strangers" })
        #expect(fired["result"] as? String == "greylist new")
        #expect(fired["action"] as? String == "tempfail")
        #expect(fired["reply"] as? String == "451 4.7.1 Greylisted: please try again in 300 seconds")
        let checks = records.filter { $0["check"] as? String == "greylist" }.map { $0["result"] as? String ?? "" }
        #expect(checks == ["unchecked", "unchecked"])
        await gw.stop()
        down.stop()
    }

    @Test(arguments: [("pass", "ok"), ("tempfail", "451 4.3.0 Temporary lookup failure, try again later")])
    func aStoreThatIsDownPassesOrTempfailsAsConfigured(_ onError: String, _ expected: String) async throws {
        let clock = TestClock()
        let down = try await RecordingDownstream.start()
        var store = GreylistConfig()
        store.path = "/dev/null/greylist.sqlite"
        let gw = try await Self.gateway(down, policy: try Self.policy("onError: \(onError)"), greylist: store, clock: clock)
        let r = try await Self.send(gw)
        if expected == "ok" { #expect(r["ok"] as? Bool == true, "\(r)") } else { #expect(Self.refused(r, "b@example.org") == expected) }
        let records = try await gw.records(waitingFor: "session.close")
        let g = try #require(records.first { $0["check"] as? String == "greylist" })
        #expect(g["result"] as? String == "error")
        #expect((g["reason"] as? String)?.hasPrefix("greylist store (sqlite): sqlite: /dev/null/greylist.sqlite:") == true)
        #expect((g["reason"] as? String)?.hasSuffix("(onError: \(onError))") == true)
        await gw.stop()
        down.stop()
    }

    @Test func aGreylistRuleNeedsModeRulesAndAStageThatKnowsTheTriplet() async throws {
        let rules = "rule g at rcpt\n  when sender.domain == \"x.example\"\n  greylist\n"
        var (st, out) = try await runProgram(CLITests.binary, ["policy", "check", try Self.policy("", rules: rules)])
        #expect(st == 2)
        #expect(out.contains("r.rules:3:3: 'greylist' in a rule needs the greylist check's 'mode: rules'; in mode 'all' it greylists every recipient itself"), "\(out)")
        (st, out) = try await runProgram(CLITests.binary, ["policy", "check", try Self.policy("mode: rules", rules: "rule h at mail\n  greylist\n")])
        #expect(st == 2)
        #expect(out.contains("r.rules:2:3: 'greylist' acts at rcpt or message, where the triplet (client, sender, recipient) is known, not at mail"), "\(out)")
        (st, out) = try await runProgram(CLITests.binary, ["policy", "check", try Self.policy("mode: sometimes")])
        #expect(st == 2)
        #expect(out.contains("p.yaml:3:") && out.contains("'mode' must be all or rules"), "\(out)")
    }

    @Test func theCommandLineShowsAndManagesTheStore() async throws {
        let dir = NSTemporaryDirectory() + "mg-greycli-" + UUID().uuidString
        var c = GreylistConfig()
        c.path = dir + "/g.sqlite"
        let g = GreylistService(config: c)
        for (ip, from) in [("192.0.2.7", "a@example.net"), ("198.51.100.9", "b@example.net")] {
            let (key, client) = g.key(ip: IPAddress(ip)!, ptr: nil, sender: from, recipient: "r@example.org")
            #expect(try await g.check(key: key, client: client).state == .new)
        }
        await g.close()
        let file = ["--sqlite", c.path]
        var (st, out) = try await runProgram(CLITests.binary, ["greylist", "stats"] + file)
        #expect(st == 0)
        #expect(out == """
        store            sqlite \(c.path)
        settings         delay 300s, window 86400s, lifetime 3110400s, auto-allow after 5 passes
        triplets waiting 2
        triplets passed  0
        clients          0
        clients allowed  0

        """, "\(out)")
        (st, out) = try await runProgram(CLITests.binary, ["greylist", "allow", "203.0.113.9"] + file)
        #expect(out == "allowed 203.0.113.0/24\n")
        (st, out) = try await runProgram(CLITests.binary, ["greylist", "allow", "2001:db8::/48"] + file)
        #expect(out == "allowed 2001:db8::/48\n")
        (st, out) = try await runProgram(CLITests.binary, ["greylist", "stats"] + file)
        #expect(out.contains("clients allowed  2\n"), "\(out)")
        (st, out) = try await runProgram(CLITests.binary, ["greylist", "list"] + file)
        let lines = out.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.contains("/r@example.org  waiting ") && $0.hasSuffix("passes 0") }, "\(out)")
        #expect(lines.contains { $0.hasPrefix("192.0.2.0/24/a@example.net/r@example.org  ") })
        (st, out) = try await runProgram(CLITests.binary, ["greylist", "purge"] + file)
        #expect(st == 0)
        #expect(out == "removed 0\n")
        (st, out) = try await runProgram(CLITests.binary, ["greylist", "allow", "not an address"] + file)
        #expect(st != 0)
        #expect(out.contains("'not an address' is not an address, a network or a domain"), "\(out)")
    }

    @Test func atTheEndOfDataEveryRecipientIsGreylistedAtOnce() async throws {
        let clock = TestClock()
        let down = try await RecordingDownstream.start()
        let gw = try await Self.gateway(down, policy: try Self.policy("stage: message"), greylist: .memory, clock: clock)
        let first = try await Self.send(gw, to: ["b@example.org", "c@example.org"])
        #expect(first["error"] as? String == "data", "\(first)")
        #expect(first["code"] as? Int == 451)
        #expect(first["text"] as? String == "4.7.1 Greylisted: please try again in 300 seconds")
        clock.advance(300)
        #expect(try await Self.send(gw, to: ["b@example.org", "c@example.org"])["ok"] as? Bool == true)
        #expect(down.messages.map(\.rcpts) == [["b@example.org", "c@example.org"]])
        let records = try await gw.records(waitingFor: "session.close", count: 2)
        let grey = records.filter { $0["check"] as? String == "greylist" }
        #expect(grey.map { $0["stage"] as? String ?? "" } == ["message", "message"])
        #expect(grey.map { $0["result"] as? String ?? "" } == ["new", "passed"])
        await gw.stop()
        down.stop()
    }

    /// A gateway killed with SIGKILL right after it answered 451 still has the triplet.
    @Test func aKilledGatewayKeepsTheTripletItAnswered() async throws {
        let dir = NSTemporaryDirectory() + "mg-greykill-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let port = try FaultTests.freePort()
        try "name: grey\nchecks:\n  greylist: {}\n".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        try """
        listeners:
          - bind: ["127.0.0.1:\(port)"]
            authorizedAddresses: [192.0.2.0/24]
        domains: [example.org]
        policy: p.yaml
        downstream: {targets: ["maildir:var/mail"]}
        greylist: {path: var/greylist.sqlite}

        """.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let p = try await CLITests.serve(dir: dir, port: port)
        let r = try await Client.smtplib(port: port, from: "a@example.net", to: ["b@example.org"], data: Self.message)
        // `mailgate serve` names the session in refusals by default.
        let said = try #require(Self.refused(r, "b@example.org"))
        #expect(said.hasPrefix("451 4.7.1 Greylisted: please try again in 300 seconds [id ") && said.count == 79, "\(r)")
        #expect(withoutID(said) == "451 4.7.1 Greylisted: please try again in 300 seconds")
        kill(p.processIdentifier, SIGKILL)
        var c = GreylistConfig()
        c.path = dir + "/var/greylist.sqlite"
        let g = GreylistService(config: c)
        let entries = try await g.store().list(limit: 10)
        #expect(entries.map(\.key) == ["127.0.0.0/24/a@example.net/b@example.org"])
        await g.close()
    }

    @Test func theStoreIsReadyAtStartAndPurgedInTheBackground() async throws {
        let clock = TestClock()
        let down = try await RecordingDownstream.start()
        var store = try await GreylistBackend.postgresql.config("")
        store.purgeInterval = 1
        let gw = try await Self.gateway(down, policy: try Self.policy(""), greylist: store, clock: clock)
        // The schema exists before any lookup: created at start.
        var records = try await gw.records(waitingFor: "greylist.store")
        #expect(records.first { $0["event"] as? String == "greylist.store" }?["result"] as? String == "ok")
        #expect(Self.refused(try await Self.send(gw), "b@example.org") == "451 4.7.1 Greylisted: please try again in 300 seconds")
        // Past the window nobody retried: the next purge removes the triplet.
        clock.advance(86_401)
        for _ in 0..<50 {
            records = try await gw.records()
            if records.contains(where: { $0["event"] as? String == "greylist.purge" && ($0["removed"] as? Int ?? 0) == 1 }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let purged = try #require(records.first { $0["event"] as? String == "greylist.purge" && ($0["removed"] as? Int ?? 0) == 1 })
        #expect(purged["result"] as? String == "ok")
        #expect(purged["store"] as? String == "postgresql")
        #expect(try await gw.server.greylist.store().stats(settings: GreylistSettings()) == GreylistStats())
        await gw.stop()
        down.stop()
    }
}
