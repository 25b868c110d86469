import Foundation
import Testing
@testable import PolicyEngine
import Checks
import SMTPProtocol

/// How a policy turns check results and rules into replies, stage by stage.
@Suite struct PolicyRunTests {
    @Test func aRuleRejectsWithItsReplyAndPlaceholders() async throws {
        let d = try PolicyDir.rules("""
        rule no-literal at helo
          when helo.literal
          reject 550 5.7.1 "Use your name, not [{client.ip}] ({helo.name})"
        """)
        let r = await simulate(try d.load(), helo: "[198.51.100.7]")
        #expect(r.action == "reject")
        #expect(r.stage == .helo)
        #expect(r.reply?.summary == "550 5.7.1 Use your name, not [198.51.100.7] ([198.51.100.7])")
        let v = try #require(r.verdicts.first { $0.rule == "no-literal" })
        #expect(v.place == "\(d.path)/r.rules:1")
        #expect(v.facts.map { "\($0.0)=\($0.1)" } == ["helo.literal=true"])
    }

    @Test func placeholderValuesCannotBreakTheReply() async throws {
        let d = try PolicyDir.rules("rule h at data when header(\"Subject\") != \"\" reject \"subject {sender} was: x\"\n")
        let r = await simulate(try d.load(), from: "a@example.net", message: "Subject: x\n\n.\n")
        #expect(r.reply?.summary == "550 5.7.1 subject a@example.net was: x")
        #expect(r.reply?.encoded == "550 5.7.1 subject a@example.net was: x\r\n")
    }

    @Test func aRuleOverridesACheckThatRejects() async throws {
        // The helo check refuses "bad_helo" by itself; the rule lets authorized-looking
        // test clients through anyway.
        let d = try PolicyDir(["p.yaml": "name: t\nchecks: [helo]\nrules: [r.rules]\n",
                               "r.rules": "rule lab at helo when client.ip in \"198.51.100.0/24\" accept\n"])
        let r = await simulate(try d.load(), helo: "bad_helo")
        #expect(r.action == "accept")
        let check = try #require(r.verdicts.first { $0.check == "helo" })
        #expect(check.result == "invalid")
        #expect(check.action == "continue")
        #expect(check.overriddenBy == "lab")
        // Without the rule the check's own verdict stands.
        let r2 = await simulate(try d.load(), ip: "192.0.2.9", helo: "bad_helo")
        #expect(r2.reply?.summary == "501 5.5.2 Helo command rejected: Invalid name")
    }

    @Test func monitorModeLogsWhatWouldHappenAndLetsMailThrough() async throws {
        let d = try PolicyDir.rules("""
        rule no-literal at helo when helo.literal reject 550 5.7.1 "no"
        rule tag at data when header("X-Bulk") != "" header "X-Filter" "bulk"
        """, policy: "monitor: true\n")
        let r = await simulate(try d.load(), helo: "[198.51.100.7]", message: "X-Bulk: 1\nFrom: a@x\n\nhi\n")
        #expect(r.action == "accept")
        #expect(r.headers.isEmpty)
        #expect(r.would == ["reject 550 5.7.1 no", "header X-Filter: bulk"])
        let v = try #require(r.verdicts.first { $0.rule == "no-literal" })
        #expect(v.action == "continue")
    }

    @Test func aMonitoredRuleHasNoEffectButTheOthersDo() async throws {
        let d = try PolicyDir.rules("""
        rule trial at mail monitor when sender.domain == "example.net" reject 550 5.7.1 "trial"
        rule points at mail monitor when sender.domain == "example.net" score +5
        rule real at rcpt when recipient.local == "bob" reject 550 5.1.1 "no bob"
        """)
        let r = await simulate(try d.load(), rcpt: ["bob@example.org"])
        #expect(r.reply?.summary == "550 5.1.1 no bob")
        #expect(r.score == 0)
        #expect(r.would == ["reject 550 5.7.1 trial", "score +5"])
    }

    @Test func deferredRejectionIsGivenAtRcptExceptToPostmaster() async throws {
        let d = try PolicyDir.rules("""
        rule listed at connect defer when flaky.result == "listed" reject 554 5.7.1 "blocked using {flaky.zones}"
        """.replacingOccurrences(of: "checks", with: ""), policy: "")
        // flaky must be in the policy's checks for its facts.
        try d.write("p.yaml", "name: t\nchecks: [flaky]\nrules: [r.rules]\n")
        let p = try d.load()
        let r = await simulate(p, ip: "192.0.2.1", rcpt: ["bob@example.org", "postmaster@example.org"])
        // bob is refused at RCPT with the connect-time decision; postmaster gets through.
        let rcpts = r.steps.filter { $0.stage == .rcpt }
        #expect(rcpts.map { $0.reply?.summary ?? "250" } == ["554 5.7.1 blocked using bl.test", "250"])
        #expect(r.action == "accept")
        let connect = try #require(r.verdicts.first { $0.rule == "listed" })
        #expect(connect.action == "defer")
        #expect(connect.deferredTo == .rcpt)
        let given = try #require(r.verdicts.first { $0.result == "deferred" })
        #expect(given.reason == "decided at connect by rule listed")
        // Only refused recipients: the transaction is refused at RCPT.
        let r2 = await simulate(p, ip: "192.0.2.1", rcpt: ["bob@example.org"])
        #expect(r2.action == "reject")
        #expect(r2.stage == .rcpt)
    }

    @Test func policyWideDeferralToDataAndAuthClearsIt() async throws {
        let d = try PolicyDir(["p.yaml": "name: t\ndeferRejection: data\nchecks: [helo]\n"])
        let p = try d.load()
        let r = await simulate(p, helo: "bad_helo", rcpt: ["bob@example.org", "carol@example.org"])
        #expect(r.action == "reject")
        #expect(r.stage == .data)
        #expect(r.reply?.summary == "501 5.5.2 Helo command rejected: Invalid name")
        #expect(r.steps.filter { $0.stage == .rcpt }.allSatisfy { $0.reply == nil })
        // A transaction only to postmaster passes.
        let r2 = await simulate(p, helo: "bad_helo", rcpt: ["postmaster@example.org"])
        #expect(r2.action == "accept")
        // AUTH clears a deferred rejection.
        let run = PolicyRun(policy: p, isLocalDomain: { $0 == "example.org" })
        var ctx = CheckContext(sessionID: "s", listener: "l", clientIP: IPAddress("192.0.2.9")!, clientPort: 1, clientAuthorized: false, maxMessageSize: 0)
        ctx.helo = "bad_helo"
        _ = await run.run(.connect, context: ctx) { _ in }
        _ = await run.run(.helo, context: ctx) { _ in }
        ctx.recipients = [Mailbox(localPart: "bob", domain: "example.org")]
        #expect(run.atDataCommand(ctx) { _ in } != nil)
        run.authenticated()
        #expect(run.atDataCommand(ctx) { _ in } == nil)
    }

    /// A stage with no check and no rule is decided by `runNow`, without an `await`, the
    /// same as by `run`: a deferred rejection is still given there.
    @Test func aStageWhereNothingWaitsIsDecidedAtOnce() async throws {
        let d = try PolicyDir(["p.yaml": "name: t\ndeferRejection: rcpt\nchecks: [helo]\n"])
        let run = PolicyRun(policy: try d.load(), isLocalDomain: { $0 == "example.org" })
        var ctx = CheckContext(sessionID: "s", listener: "l", clientIP: IPAddress("192.0.2.9")!, clientPort: 1, clientAuthorized: false, maxMessageSize: 0)
        ctx.helo = "bad_helo"
        #expect(!run.waits(at: .connect))
        #expect(run.waits(at: .helo))
        #expect(run.runNow(.helo, context: ctx) { _ in } == nil)
        var records: [PolicyVerdict] = []
        #expect(run.runNow(.connect, context: ctx) { records.append($0) }?.action == .continue)
        #expect(records.isEmpty)
        #expect(await run.run(.helo, context: ctx) { _ in }.action == .continue)
        run.beginTransaction()
        #expect(run.runNow(.mail, context: ctx) { _ in }?.action == .continue)
        ctx.recipient = Mailbox(localPart: "bob", domain: "example.org")
        let rcpt = run.runNow(.rcpt, context: ctx) { records.append($0) }
        #expect(rcpt?.action.reply?.summary == "501 5.5.2 Helo command rejected: Invalid name")
        #expect(records.map(\.result) == ["deferred"])
    }

    @Test func aMailStageDeferralEndsWithTheTransaction() async throws {
        let d = try PolicyDir.rules("rule bounce at mail defer when sender.null reject 550 5.7.1 \"no bounces\"\n")
        let run = PolicyRun(policy: try d.load(), isLocalDomain: { _ in true })
        var ctx = CheckContext(sessionID: "s", listener: "l", clientIP: IPAddress("192.0.2.9")!, clientPort: 1, clientAuthorized: false, maxMessageSize: 0)
        ctx.sender = .null
        run.beginTransaction()
        #expect(await run.run(.mail, context: ctx) { _ in }.action == .continue)
        ctx.recipient = Mailbox(localPart: "bob", domain: "example.org")
        #expect(await run.run(.rcpt, context: ctx) { _ in }.action.reply?.summary == "550 5.7.1 no bounces")
        run.endTransaction()
        ctx.sender = .mailbox(Mailbox(localPart: "a", domain: "example.net"))
        run.beginTransaction()
        _ = await run.run(.mail, context: ctx) { _ in }
        #expect(await run.run(.rcpt, context: ctx) { _ in }.action == .continue)
    }

    @Test func scoresAddUpAcrossStagesAndThresholdsDecide() async throws {
        let d = try PolicyDir.rules("""
        rule a at connect when client.ip in "198.51.100.0/24" score +2
        rule b at helo when helo.name matches "*.example.net" score +1.5
        rule c at rcpt when recipient.local == "bob" score +1
        rule d at data when header("Subject") contains "offer" score +3
        """, policy: "thresholds: {header: 4, tempfail: 6, reject: 7}\n")
        let p = try d.load()
        let tagged = await simulate(p, message: "Subject: hi\n\nx\n")
        #expect(tagged.score == 4.5)
        #expect(tagged.action == "accept")
        #expect(tagged.headers.map { "\($0.name): \($0.value)" } == ["X-Spam-Flag: YES", "X-Spam-Score: 4.5"])
        let rejected = await simulate(p, message: "Subject: great offer\n\nx\n")
        #expect(rejected.reply?.summary == "550 5.7.1 Message refused as spam (score 7.5)")
        #expect(rejected.stage == .message)
        let deferred = await simulate(p, rcpt: ["carol@example.org"], message: "Subject: great offer\n\nx\n")
        #expect(deferred.reply?.summary == "451 4.7.1 Message deferred as likely spam (score 6.5), try again later")
    }

    @Test func sessionScoreSurvivesATransaction() async throws {
        let d = try PolicyDir.rules("""
        rule a at connect when client.ip in "198.51.100.0/24" score +2
        rule b at mail when sender.null score +1
        """)
        let run = PolicyRun(policy: try d.load(), isLocalDomain: { _ in true })
        var ctx = CheckContext(sessionID: "s", listener: "l", clientIP: IPAddress("198.51.100.1")!, clientPort: 1, clientAuthorized: false, maxMessageSize: 0)
        _ = await run.run(.connect, context: ctx) { _ in }
        ctx.sender = .null
        run.beginTransaction()
        _ = await run.run(.mail, context: ctx) { _ in }
        #expect(run.score == 3)
        run.endTransaction()
        #expect(run.score == 2)
    }

    /// STARTTLS starts the session over: the HELO stage's score, facts and accept are
    /// forgotten (the client greets again and is judged again), the connect stage's stand,
    /// and a connect-stage rejection deferred to RCPT returns even if AUTH had cleared it.
    @Test func aRestartAfterTLSForgetsTheHeloStageAndKeepsTheConnectStage() async throws {
        let d = try PolicyDir.rules("""
        rule near at connect when client.ip in "198.51.100.0/24" score +2
        rule listed at connect when client.ip in "198.51.100.0/24" reject 550 5.7.1 "listed"
        rule named at helo when helo.name matches "*.example.net" score +1.5
        rule lab at helo when helo.name == "lab.example.net" accept
        """, policy: "deferRejection: rcpt\n")
        let run = PolicyRun(policy: try d.load(), isLocalDomain: { _ in true })
        var ctx = CheckContext(sessionID: "s", listener: "l", clientIP: IPAddress("198.51.100.1")!, clientPort: 1, clientAuthorized: false, maxMessageSize: 0)
        _ = await run.run(.connect, context: ctx) { _ in }
        ctx.helo = "lab.example.net"
        _ = await run.run(.helo, context: ctx) { _ in }
        #expect(run.score == 3.5)
        run.authenticated()
        run.restartAfterTLS()
        #expect(run.score == 2)
        // Greeted again: counted once, and the pre-TLS accept no longer shields the session.
        ctx.helo = "other.example.net"
        _ = await run.run(.helo, context: ctx) { _ in }
        #expect(run.score == 3.5)
        ctx.recipient = Mailbox(localPart: "bob", domain: "example.org")
        let rcpt = await run.run(.rcpt, context: ctx) { _ in }
        #expect(rcpt.action.reply?.summary == "550 5.7.1 listed")
    }

    /// Out of descriptors or DNS capacity is the gateway's own trouble: a tempfail, never a
    /// pass, whatever onError says.
    @Test func aLocalResourceFailureIsNeverAPass() async throws {
        let open = try PolicyDir(["p.yaml": "name: t\nchecks: [flaky]\n"]).load()
        let r = await simulate(open, ip: "192.0.2.67")
        #expect(r.action == "tempfail")
        // At connect the client hears the tempfail as 421 and the session ends, as at the gateway.
        #expect(r.reply?.summary == "421 4.3.0 Temporary lookup failure, try again later")
        let v = try #require(r.verdicts.first { $0.check == "flaky" })
        #expect(v.reason?.contains("local resource failure: more than 0 DNS queries in flight") == true, "\(v)")
        #expect(v.reason?.hasSuffix("(onError: tempfail)") == true, "\(v)")
    }

    @Test func failOpenAndFailClosedAreSettingsOfTheCheck() async throws {
        // flaky's documented default is pass (fail open).
        let open = try PolicyDir(["p.yaml": "name: t\nchecks: [flaky]\n"]).load()
        let r1 = await simulate(open, ip: "192.0.2.66")
        #expect(r1.action == "accept")
        let v1 = try #require(r1.verdicts.first { $0.check == "flaky" })
        #expect(v1.result == "error")
        #expect(v1.action == "continue")
        #expect(v1.reason == "backend down (onError: pass)")
        let closed = try PolicyDir(["p.yaml": "name: t\nchecks:\n  flaky: {onError: tempfail}\n"]).load()
        let r2 = await simulate(closed, ip: "192.0.2.66")
        #expect(r2.action == "tempfail")
        #expect(r2.stage == .connect)
        #expect(r2.reply?.summary == "421 4.3.0 Temporary lookup failure, try again later")
        #expect(r2.verdicts.first { $0.check == "flaky" }?.reason == "backend down (onError: tempfail)")
    }

    @Test func aCheckOverItsBudgetTempfailsEvenWhenFailingOpen() async throws {
        // slow would accept if it ever answered; its default is fail open; the budget is 300 ms.
        let p = try PolicyDir(["p.yaml": "name: t\nchecks: [slow]\n"]).load()
        let start = ContinuousClock.now
        let r = await simulate(p)
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(r.action == "tempfail")
        #expect(r.stage == .rcpt)
        #expect(r.reply?.summary == "451 4.4.3 Temporary policy failure, try again later")
        #expect(r.verdicts.first { $0.check == "slow" }?.result == "timeout")
    }

    @Test func acceptAtConnectSkipsTheRestOfTheSession() async throws {
        let d = try PolicyDir.rules("""
        rule friends at connect when client.ip in "198.51.100.0/24" accept
        rule never at mail when sender.domain == "example.net" reject
        """)
        let r = await simulate(try d.load(), helo: "bad_helo")
        #expect(r.action == "accept")
        #expect(r.rulesFired == ["friends"])
        #expect(r.verdicts.allSatisfy { $0.check == "policy" })
    }
}

/// The failure default of every real check is what the README says.
@Suite struct CatalogTests {
    @Test func failureDefaultsOfTheChecks() {
        let c = Dictionary(uniqueKeysWithValues: CheckCatalog().catalog.map { ($0.name, $0.defaultOnError) })
        #expect(c == ["size": .tempfail, "helo": .pass, "dnsbl": .pass, "rdns": .pass, "helodns": .pass, "spf": .tempfail, "dkim": .pass, "greylist": .pass])
    }

    @Test func policyOverridesTheDefault() throws {
        let p = try PolicyDir(["p.yaml": "name: t\nchecks:\n  size: {onError: pass}\n  helo: {onError: tempfail}\n"]).load()
        #expect(p.checks.map(\.onError) == [.pass, .tempfail])
    }

    @Test func logOnlyRulesRecordAndChangeNothing() async throws {
        let d = try PolicyDir.rules("rule note at mail when sender.domain == \"example.net\" log \"from {sender.domain}\"\n")
        let r = await simulate(try d.load())
        #expect(r.action == "accept")
        let v = try #require(r.verdicts.first { $0.rule == "note" })
        #expect(v.action == "log")
        #expect(v.reason == "from example.net")
    }
}
