import Foundation
import Testing
import SMTPProtocol
import DNSResolver
@testable import MailAuth

/// Fixture zones: one name per case, each asserting an exact result.
let spfFixtures = """
# basics
pass.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
softfail.test. 300 IN TXT "v=spf1 ~all"
neutral.test. 300 IN TXT "v=spf1 ?all"
plain.test. 300 IN TXT "v=spf1"
nospf.test. 300 IN TXT "some other text"
two.test. 300 IN TXT "v=spf1 -all"
two.test. 300 IN TXT "v=spf1 +all"
upper.test. 300 IN TXT "V=SPF1 IP4:192.0.2.1 -ALL"
notspf.test. 300 IN TXT "v=spf10 -all"
split.test. 300 IN TXT "v=spf1 ip4:192.0.2.1" " -all"
broken.test. SERVFAIL
# a and mx with CIDR
a.test. 300 IN TXT "v=spf1 a -all"
a.test. 300 IN A 192.0.2.10
acidr.test. 300 IN TXT "v=spf1 a:host.acidr.test/28 -all"
host.acidr.test. 300 IN A 192.0.2.17
a6.test. 300 IN TXT "v=spf1 a//64 -all"
a6.test. 300 IN AAAA 2001:db8:1::1
mx.test. 300 IN TXT "v=spf1 mx -all"
mx.test. 300 IN MX 10 mx1.mx.test.
mx1.mx.test. 300 IN A 192.0.2.20
manymx.test. 300 IN TXT "v=spf1 mx -all"
ptr.test. 300 IN TXT "v=spf1 ptr -all"
30.2.0.192.in-addr.arpa. 300 IN PTR host.ptr.test.
host.ptr.test. 300 IN A 192.0.2.30
ip6.test. 300 IN TXT "v=spf1 ip6:2001:db8::/32 -all"
exists.test. 300 IN TXT "v=spf1 exists:%{ir}.ok.exists.test -all"
40.2.0.192.ok.exists.test. 300 IN A 127.0.0.2
# include and redirect
inc.test. 300 IN TXT "v=spf1 include:pass.test -all"
incnone.test. 300 IN TXT "v=spf1 include:nospf.test -all"
incperm.test. 300 IN TXT "v=spf1 include:two.test -all"
inctemp.test. 300 IN TXT "v=spf1 include:broken.test -all"
incfail.test. 300 IN TXT "v=spf1 include:softfail.test ?all"
redir.test. 300 IN TXT "v=spf1 redirect=pass.test"
redirnone.test. 300 IN TXT "v=spf1 redirect=nospf.test"
redirfirst.test. 300 IN TXT "v=spf1 redirect=pass.test ip4:198.51.100.1"
# exp
exp.test. 300 IN TXT "v=spf1 -all exp=why.exp.test"
why.exp.test. 300 IN TXT "%{i} is not one of %{d}'s designated mail servers"
expbad.test. 300 IN TXT "v=spf1 -all exp=nowhere.exp.test"
# syntax errors
bad1.test. 300 IN TXT "v=spf1 ip4:192.0.2.300 -all"
bad2.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/33 -all"
bad3.test. 300 IN TXT "v=spf1 foo:bar -all"
bad4.test. 300 IN TXT "v=spf1 a:foo.1 -all"
bad5.test. 300 IN TXT "v=spf1 exists:%{x}.test -all"
bad6.test. 300 IN TXT "v=spf1 redirect=a.test redirect=b.test"
bad7.test. 300 IN TXT "v=spf1 -all include"
bad8.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/024 -all"
bad9.test. 300 IN TXT "v=spf1 -all %{d}"
badlate.test. 300 IN TXT "v=spf1 +all ip4:nonsense"
unknownmod.test. 300 IN TXT "v=spf1 foo-bar.baz=%{d} -all"
zeroprefix.test. 300 IN TXT "v=spf1 ip4:0.0.0.0/0 -all"
# limits
deep1.test. 300 IN TXT "v=spf1 include:deep2.test -all"
deep2.test. 300 IN TXT "v=spf1 include:deep3.test -all"
deep3.test. 300 IN TXT "v=spf1 include:deep4.test -all"
deep4.test. 300 IN TXT "v=spf1 include:deep5.test -all"
deep5.test. 300 IN TXT "v=spf1 include:deep6.test -all"
deep6.test. 300 IN TXT "v=spf1 include:deep7.test -all"
deep7.test. 300 IN TXT "v=spf1 include:deep8.test -all"
deep8.test. 300 IN TXT "v=spf1 include:deep9.test -all"
deep9.test. 300 IN TXT "v=spf1 include:deep10.test -all"
deep10.test. 300 IN TXT "v=spf1 include:deep11.test -all"
deep11.test. 300 IN TXT "v=spf1 include:deep12.test -all"
deep12.test. 300 IN TXT "v=spf1 +all"
ten.test. 300 IN TXT "v=spf1 a:n1.ten.test a:n2.ten.test a:n3.ten.test a:n4.ten.test a:n5.ten.test a:n6.ten.test a:n7.ten.test a:n8.ten.test a:n9.ten.test ip4:192.0.2.99 -all"
eleven.test. 300 IN TXT "v=spf1 a:n1.ten.test a:n2.ten.test a:n3.ten.test a:n4.ten.test a:n5.ten.test a:n6.ten.test a:n7.ten.test a:n8.ten.test a:n9.ten.test a:n10.ten.test a:n11.ten.test ip4:192.0.2.99 -all"
*.ten.test. 300 IN A 198.51.100.99
loop.test. 300 IN TXT "v=spf1 include:loop.test -all"
voids.test. 300 IN TXT "v=spf1 a:v1.voids.test a:v2.voids.test a:v3.voids.test +all"
twovoids.test. 300 IN TXT "v=spf1 a:v1.voids.test a:v2.voids.test +all"
huge.test. 300 IN TXT "v=spf1 " \((0..<6).map { _ in "\"" + String(repeating: "ip4:198.51.100.1 ", count: 10) + "\"" }.joined(separator: " ")) "-all"
"""

final class SPFWorld: @unchecked Sendable {
    let server: DNSFixtureServer
    let spf: SPFEvaluator
    init(extra: String = "") async throws {
        var fx = spfFixtures + "\n" + extra
        // manymx.test: eleven MX records.
        for i in 1...11 { fx += "\nmanymx.test. 300 IN MX \(i) mx\(i).manymx.test." }
        server = try DNSFixtureServer(fixtures: fx)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.timeout = 1.5
        c.attempts = 1
        spf = SPFEvaluator(resolver: DNSResolver(config: c), receiver: "mx.receiver.test")
    }
    func check(_ domain: String, ip: String = "192.0.2.1", local: String = "user", helo: String = "helo.test") async -> SPFOutcome {
        await spf.check(ip: IPAddress(ip)!, sender: "\(local)@\(domain)", helo: helo)
    }
}

@Suite struct SPFTests {
    @Test func resultsOfTheBasicRecords() async throws {
        let w = try await SPFWorld()
        #expect(await w.check("pass.test").result == .pass)
        #expect(await w.check("pass.test", ip: "198.51.100.1").result == .fail)
        #expect(await w.check("pass.test", ip: "198.51.100.1").mechanism == "-all")
        #expect(await w.check("pass.test").mechanism == "ip4:192.0.2.0/24")
        #expect(await w.check("softfail.test").result == .softfail)
        #expect(await w.check("neutral.test").result == .neutral)
        #expect(await w.check("plain.test").result == .neutral)
        #expect(await w.check("nospf.test").result == .none)
        #expect(await w.check("nxdomain.test").result == .none)
        #expect(await w.check("two.test").result == .permerror)
        #expect(await w.check("upper.test").result == .pass)
        #expect(await w.check("notspf.test").result == .none)
        #expect(await w.check("split.test", ip: "192.0.2.2").result == .fail)
        #expect(await w.check("broken.test").result == .temperror)
        #expect(await w.check("single-label").result == .none)
        await w.server.stop()
    }

    @Test func mechanisms() async throws {
        let w = try await SPFWorld()
        #expect(await w.check("a.test", ip: "192.0.2.10").result == .pass)
        #expect(await w.check("a.test", ip: "192.0.2.11").result == .fail)
        #expect(await w.check("acidr.test", ip: "192.0.2.30").result == .pass)
        #expect(await w.check("acidr.test", ip: "192.0.2.33").result == .fail)
        #expect(await w.check("a6.test", ip: "2001:db8:1::ffff").result == .pass)
        #expect(await w.check("a6.test", ip: "2001:db8:2::1").result == .fail)
        #expect(await w.check("mx.test", ip: "192.0.2.20").result == .pass)
        #expect(await w.check("manymx.test", ip: "192.0.2.20").result == .permerror)
        #expect(await w.check("ptr.test", ip: "192.0.2.30").result == .pass)
        #expect(await w.check("ptr.test", ip: "192.0.2.31").result == .fail)
        #expect(await w.check("ip6.test", ip: "2001:db8::5").result == .pass)
        #expect(await w.check("ip6.test", ip: "192.0.2.1").result == .fail)
        #expect(await w.check("exists.test", ip: "192.0.2.40").result == .pass)
        #expect(await w.check("exists.test", ip: "192.0.2.41").result == .fail)
        #expect(await w.check("zeroprefix.test", ip: "203.0.113.9").result == .pass)
        await w.server.stop()
    }

    @Test func includeAndRedirect() async throws {
        let w = try await SPFWorld()
        let inc = await w.check("inc.test")
        #expect(inc.result == .pass)
        #expect(inc.mechanism == "include:pass.test")
        #expect(await w.check("inc.test", ip: "198.51.100.1").result == .fail)
        #expect(await w.check("incnone.test").result == .permerror)
        #expect(await w.check("incperm.test").result == .permerror)
        #expect(await w.check("inctemp.test").result == .temperror)
        #expect(await w.check("incfail.test").result == .neutral)
        #expect(await w.check("redir.test").result == .pass)
        #expect(await w.check("redir.test", ip: "198.51.100.1").result == .fail)
        #expect(await w.check("redirnone.test").result == .permerror)
        // redirect applies only when no mechanism matched, wherever it is written.
        #expect(await w.check("redirfirst.test", ip: "198.51.100.1").result == .pass)
        await w.server.stop()
    }

    @Test func theFailExplanationIsExpanded() async throws {
        let w = try await SPFWorld()
        let r = await w.check("exp.test", ip: "198.51.100.7")
        #expect(r.result == .fail)
        #expect(r.explanation == "198.51.100.7 is not one of exp.test's designated mail servers")
        let r2 = await w.check("expbad.test", ip: "198.51.100.7")
        #expect(r2.result == .fail)
        #expect(r2.explanation == nil)
        await w.server.stop()
    }

    @Test func syntaxErrorsAnywhereArePermerror() async throws {
        let w = try await SPFWorld()
        for d in ["bad1", "bad2", "bad3", "bad4", "bad5", "bad6", "bad7", "bad8", "bad9", "badlate"] {
            let r = await w.check("\(d).test")
            #expect(r.result == .permerror, "\(d): \(r)")
        }
        #expect(await w.check("unknownmod.test").result == .fail)
        await w.server.stop()
    }

    @Test func theLookupLimits() async throws {
        let w = try await SPFWorld()
        let ten = await w.check("ten.test", ip: "192.0.2.99")
        #expect(ten.result == .pass)
        #expect(ten.lookups == 9)
        let eleven = await w.check("eleven.test", ip: "192.0.2.99")
        #expect(eleven.result == .permerror)
        #expect(eleven.problem == "more than 10 DNS-querying terms (at a:n11.ten.test)")
        let deep = await w.check("deep1.test")
        #expect(deep.result == .permerror)
        #expect(deep.lookups == 11)
        let loop = await w.check("loop.test")
        #expect(loop.result == .permerror)
        #expect(await w.check("twovoids.test").result == .pass)
        let voids = await w.check("voids.test")
        #expect(voids.result == .permerror)
        #expect(voids.problem == "more than 2 void lookups (at a:v3.voids.test)")
        await w.server.stop()
    }

    @Test func hostileRecordsEndQuicklyWithBoundedQueries() async throws {
        let w = try await SPFWorld()
        w.server.resetQueries()
        let start = ContinuousClock.now
        let loop = await w.check("loop.test")
        #expect(loop.result == .permerror)
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(w.server.queries.count <= 11)
        // A long record (over 512 octets: asked again over TCP) parses and evaluates.
        #expect(await w.check("huge.test", ip: "198.51.100.1").result == .pass)
        // A macro that would expand enormously is cut, not followed.
        let chunks = (0..<6).map { _ in "\"" + String(repeating: "%{s}", count: 50) + "\"" }.joined(separator: " ")
        let big = try await SPFWorld(extra: "explode.test. 300 IN TXT \"v=spf1 exists:\" \(chunks) \".x.test -all\"")
        let r = await big.check("explode.test", local: String(repeating: "a", count: 60))
        #expect(r.result == .permerror)
        #expect(r.problem == "macro expansion longer than 4096 octets")
        await big.server.stop()
        await w.server.stop()
    }

    @Test func nullSenderAndHeloIdentity() async throws {
        let w = try await SPFWorld()
        let null = await w.spf.check(ip: IPAddress("192.0.2.1")!, sender: "", helo: "pass.test")
        #expect(null.result == .pass)
        #expect(null.domain == "pass.test")
        let helo = await w.spf.check(ip: IPAddress("198.51.100.1")!, sender: nil, helo: "pass.test")
        #expect(helo.result == .fail)
        await w.server.stop()
    }

    /// RFC 7208 §7.4's examples: sender strong-bad@email.example.com, client 192.0.2.3.
    @Test func macroExpansionAsInTheRFC() throws {
        let e = SPFEvaluator(resolver: DNSResolver(servers: []), receiver: "mx.example.org")
        let ctx = SPFEvaluator.Context(ip: IPAddress("192.0.2.3")!, sender: "strong-bad@email.example.com", helo: "mx.example.net",
                                       domain: "email.example.com")
        let st = SPFEvaluator.SPFState()
        func x(_ s: String, _ c: SPFEvaluator.Context = ctx) throws -> String {
            try e.expand(try SPFEvaluator.parseMacroString(s, explain: true), c, state: st, explain: true)
        }
        #expect(try x("%{s}") == "strong-bad@email.example.com")
        #expect(try x("%{o}") == "email.example.com")
        #expect(try x("%{d}") == "email.example.com")
        #expect(try x("%{d4}") == "email.example.com")
        #expect(try x("%{d3}") == "email.example.com")
        #expect(try x("%{d2}") == "example.com")
        #expect(try x("%{d1}") == "com")
        #expect(try x("%{dr}") == "com.example.email")
        #expect(try x("%{d2r}") == "example.email")
        #expect(try x("%{l}") == "strong-bad")
        #expect(try x("%{l-}") == "strong.bad")
        #expect(try x("%{lr}") == "strong-bad")
        #expect(try x("%{lr-}") == "bad.strong")
        #expect(try x("%{l1r-}") == "strong")
        #expect(try x("%{ir}.%{v}._spf.%{d2}") == "3.2.0.192.in-addr._spf.example.com")
        #expect(try x("%{lr-}.lp._spf.%{d2}") == "bad.strong.lp._spf.example.com")
        #expect(try x("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}") == "bad.strong.lp.3.2.0.192.in-addr._spf.example.com")
        #expect(try x("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}") == "3.2.0.192.in-addr.strong.lp._spf.example.com")
        #expect(try x("%{d2}.trusted-domains.example.net") == "example.com.trusted-domains.example.net")
        var v6 = ctx
        v6.ip = IPAddress("2001:db8::cb01")!
        #expect(try x("%{ir}.%{v}._spf.%{d2}", v6) == "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com")
        #expect(try x("%%%_%-") == "% %20")
        #expect(try x("%{h} %{r} %{c}") == "mx.example.net mx.example.org 192.0.2.3")
        #expect(try x("%{S}") == "strong-bad%40email.example.com")
        #expect(throws: (any Error).self) { try SPFEvaluator.parseMacroString("%{d0}", explain: false) }
        #expect(throws: (any Error).self) { try SPFEvaluator.parseMacroString("%{c}", explain: false) }
        #expect(throws: (any Error).self) { try SPFEvaluator.parseMacroString("%x", explain: false) }
        #expect(throws: (any Error).self) { try SPFEvaluator.parseMacroString("%{d", explain: false) }
    }
}
