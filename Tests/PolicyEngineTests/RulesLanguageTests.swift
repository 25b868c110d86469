import Foundation
import Testing
@testable import PolicyEngine
import SMTPProtocol

/// The compiler refuses every mistake with its file, line and column.
@Suite struct RuleCompilerTests {
    @Test func typoInAFactNameIsRefusedWithItsPlace() throws {
        let d = try PolicyDir.rules("""
        rule bad-helo at helo
          when helo.reslt == "invalid"
          reject 550 5.7.1 "go away"
        """)
        #expect(d.errors() == ["r.rules:2:8: unknown fact 'helo.reslt'; did you mean 'helo.result'?"])
    }

    @Test func syntaxErrorsAreReportedForEveryRule() throws {
        let d = try PolicyDir.rules("""
        rule a at connect when client.ip = "1.2.3.4" accept
        rule b at helo
          when (helo.literal
          accept
        rule c at helo when helo.literal accpet
        rule d at mail
          reject 550 5.7 "x"
        rule e at mail
          when sender == "unterminated
          accept
        """)
        #expect(d.errors() == [
            "r.rules:1:34: '=' is not a comparison; use '=='",
            "r.rules:4:3: expected ')', found 'accept'",
            "r.rules:5:34: expected an action (accept, reject, tempfail, greylist, score, header, log) for rule \"c\", found 'accpet'",
            "r.rules:7:14: enhanced status code must look like 5.7.1, found 5.7",
            "r.rules:9:18: unterminated string",
        ])
    }

    @Test func factsReadBeforeTheyAreKnownAreRefused() throws {
        let d = try PolicyDir.rules("""
        rule early-header at rcpt
          when header("Subject") contains "viagra"
          reject
        rule early-sender at connect
          when sender.domain == "example.com"
          score +1
        """)
        #expect(d.errors() == [
            "r.rules:2:8: 'header' is not known yet at rcpt: it is known from data on",
            "r.rules:5:8: 'sender.domain' is not known yet at connect: it is known from mail on",
        ])
    }

    @Test func typeMismatchesAreRefused() throws {
        let d = try PolicyDir.rules("""
        rule a at mail when sender.null == "yes" accept
        rule b at mail when sender > 3 accept
        rule c at connect when client.ip in "10.0.0.0/33" accept
        rule d at mail when sender.domain accept
        rule e at connect when client.ip == "not-an-ip" accept
        rule f at data when header == "x" accept
        """)
        #expect(d.errors() == [
            "r.rules:1:33: cannot compare a bool with a string using ==",
            "r.rules:2:28: > compares numbers, found string and number",
            "r.rules:3:37: '10.0.0.0/33' is not an address or network",
            "r.rules:4:21: the condition is a string, not true or false",
            "r.rules:5:37: 'not-an-ip' is not an IP address",
            "r.rules:6:21: 'header' needs a key: header(\"…\")",
        ])
    }

    @Test func rulesThatCanNeverFireAreRefused() throws {
        let d = try PolicyDir.rules("""
        rule verb-typo at helo when helo.verb == "EHL0" score +1
        rule always-false at mail when sender.null and (1 > 2) score +1
        rule catch-all at rcpt accept
        rule shadowed at rcpt when recipient.local == "x" reject
        """)
        #expect(d.errors() == [
            "r.rules:1:42: 'helo.verb' is never \"EHL0\" (it is one of: helo, ehlo), so this comparison is always false",
            "r.rules:2:32: rule \"always-false\" can never fire: its condition is always false",
            "r.rules:4:1: rule \"shadowed\" can never fire: rule \"catch-all\" (r.rules:3) always decides at rcpt first",
        ])
    }

    @Test func missingFilesAndBadListEntriesAreRefused() throws {
        let d = try PolicyDir(["p.yaml": "name: t\nchecks: [size]\nrules: [r.rules, nowhere.rules]\n",
                               "r.rules": """
                               list nets = ip "lists/nets.txt"
                               list gone = domain "lists/gone.txt"
                               list odd = colour "lists/nets.txt"
                               rule a at connect when client.ip in nets accept
                               """,
                               "lists/nets.txt": "# ours\n10.0.0.0/8\n  192.0.2.300\n"])
        #expect(d.errors() == [
            "lists/nets.txt:3:3: '192.0.2.300' is not an address or network",
            "p.yaml:3:18: rule file 'nowhere.rules' does not exist (looked for nowhere.rules)",
            "r.rules:2:20: list file 'lists/gone.txt' cannot be read",
            "r.rules:3:12: unknown list type 'colour' (known: ip, domain, string, pattern)",
        ])
    }

    @Test func policyFileMistakesHaveTheirPlace() throws {
        let d = try PolicyDir(["p.yaml": """
            name: t
            monitr: true
            checks:
              size: {}
              hello: {}
              helo: {reject: maybe, onError: later}
            thresholds: {tempfail: 10, reject: 5}
            """])
        #expect(d.errors() == [
            "p.yaml:1:1: thresholds: tempfail (10) must be below reject (5), or it can never apply",
            "p.yaml:2:1: unknown key 'monitr' in policy; did you mean 'monitor'?",
            "p.yaml:5:3: unknown check 'hello'; did you mean 'helo'?",
            "p.yaml:6:18: 'reject' must be true or false",
            "p.yaml:6:34: 'onError' must be pass or tempfail",
        ].sorted())
    }

    @Test func placeholdersAreChecked() throws {
        let d = try PolicyDir.rules("""
        rule a at connect reject "blocked {client.ipp}"
        rule b at helo when helo.literal reject "no {sender}"
        """)
        #expect(d.errors() == [
            "r.rules:1:36: unknown fact 'client.ipp'; did you mean 'client.ip'?",
            "r.rules:2:46: placeholder {sender} is not known at helo: it is known from mail",
        ])
    }

    @Test func deferAndReplyCodesAreChecked() throws {
        let d = try PolicyDir.rules("""
        rule a at rcpt defer when recipient.local == "x" reject
        rule b at mail when sender.null reject 450 "x"
        rule c at mail when sender.null tempfail 550 "x"
        rule d at mail when sender.null reject 550 4.7.1 "x"
        rule e at mail when sender.null accept reject
        rule f at mail when sender.null greylist
        """)
        #expect(d.errors() == [
            "r.rules:1:16: 'defer' applies to rules at connect, helo or mail; this rule is at rcpt",
            "r.rules:2:33: reject needs a 5xx code, found 450 (use tempfail for 4xx)",
            "r.rules:3:33: tempfail needs a 4xx code, found 550 (use reject for 5xx)",
            "r.rules:4:33: enhanced code 4.7.1 does not match reply code 550",
            "r.rules:5:40: rule \"e\" already decides at 5:33; a rule has at most one of accept, reject, tempfail, greylist",
            "r.rules:6:33: 'greylist' needs the check 'greylist', which policy t does not run",
        ])
    }

    @Test func factsOfAKnownCheckThatThePolicyDoesNotRunAreNamed() throws {
        let d = try PolicyDir.rules("rule a at connect when flaky.result == \"listed\" reject\n")
        #expect(d.errors() == ["r.rules:1:24: fact 'flaky.result' needs the check 'flaky', which policy t does not run (add it under checks:)"])
    }

    @Test func aValidPolicyCompilesWithAVersionThatFollowsItsFiles() throws {
        let d = try PolicyDir.rules("rule a at mail when sender.null score +1\n")
        let p1 = try d.load()
        #expect(p1.name == "t")
        #expect(p1.rules.count == 1)
        #expect(p1.version.count == 12)
        #expect(try d.load().version == p1.version)
        try d.write("r.rules", "rule a at mail when sender.null score +2\n")
        #expect(try d.load().version != p1.version)
    }
}

/// What conditions mean.
@Suite struct RuleEvaluationTests {
    func fires(_ condition: String, stage: String = "message", lists: [String: String] = [:], listDecls: String = "",
               configure: (inout SimulationInput) -> Void = { _ in }) async throws -> Bool {
        var files = ["p.yaml": "name: t\nchecks: [size, helo, flaky]\nrules: [r.rules]\n",
                     "r.rules": listDecls + "\nrule probe at \(stage) when \(condition) score +1\n"]
        for (k, v) in lists { files[k] = v }
        let d = try PolicyDir(files)
        let r = await simulate(try d.load(), ip: "192.0.2.1", configure: configure)
        return r.rulesFired.contains("probe")
    }

    @Test func comparisonsOfStringsIgnoreCase() async throws {
        #expect(try await fires("sender.domain == \"EXAMPLE.NET\"", stage: "mail"))
        #expect(try await fires("sender.domain != \"example.net\"", stage: "mail") == false)
        #expect(try await fires("helo.verb == \"ehlo\"", stage: "helo"))
    }

    @Test func addressesInNetworksAndLists() async throws {
        #expect(try await fires("client.ip in \"192.0.2.0/24\"", stage: "connect"))
        #expect(try await fires("client.ip in [\"10.0.0.0/8\", \"192.0.2.1\"]", stage: "connect"))
        #expect(try await fires("client.ip == \"192.0.2.1\"", stage: "connect"))
        #expect(try await fires("client.ip in nets", stage: "connect", lists: ["n.txt": "10.0.0.0/8\n"],
                                listDecls: "list nets = ip \"n.txt\"") == false)
        #expect(try await fires("client.ip not in nets", stage: "connect", lists: ["n.txt": "10.0.0.0/8\n"],
                                listDecls: "list nets = ip \"n.txt\""))
    }

    @Test func domainListsMatchSubdomains() async throws {
        let decl = "list doms = domain \"d.txt\""
        let lists = ["d.txt": "example.net\n"]
        #expect(try await fires("sender.domain in doms", stage: "mail", lists: lists, listDecls: decl))
        #expect(try await fires("helo.name in doms", stage: "helo", lists: lists, listDecls: decl))
        #expect(try await fires("recipient.domain in doms", stage: "rcpt", lists: lists, listDecls: decl) == false)
    }

    @Test func patternsAndContains() async throws {
        #expect(try await fires("helo.name matches \"MAIL.*\"", stage: "helo"))
        #expect(try await fires("helo.name matches \"mx[0-9].*\"", stage: "helo") == false)
        #expect(try await fires("header(\"from\") contains \"@EXAMPLE\"", stage: "data"))
        #expect(try await fires("recipient.local in [\"bob\", \"carol\"]", stage: "rcpt"))
    }

    @Test func checkFactsSetsAndKeys() async throws {
        #expect(try await fires("flaky.result == \"listed\"", stage: "connect"))
        #expect(try await fires("\"BL.TEST\" in flaky.zones", stage: "connect"))
        #expect(try await fires("flaky.zones contains \"other\"", stage: "connect") == false)
        #expect(try await fires("flaky.pass(\"example.com\")", stage: "connect"))
        #expect(try await fires("flaky.pass(\"example.org\")", stage: "connect") == false)
    }

    @Test func numbersAndScore() async throws {
        #expect(try await fires("message.size > 20 and message.size < 100"))
        #expect(try await fires("score >= 0 and not (score > 0)"))
        #expect(try await fires("recipients.count == 1", stage: "data"))
    }

    @Test func globsMatchInLinearTime() throws {
        let g = try #require(try? Glob.parse("*a*a*a*a*a*a*a*a*a*a*b").get())
        let text = String(repeating: "a", count: 5000)
        let start = ContinuousClock.now
        #expect(g.matches(text) == false)
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(try Glob.parse("*.dyn.*").get().matches("host-1.dyn.example.net"))
        #expect(try Glob.parse("[!a-c]x?").get().matches("dxy"))
        #expect(try Glob.parse("[!a-c]x?").get().matches("axy") == false)
    }
}
