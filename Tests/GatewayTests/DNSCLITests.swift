import Foundation
import Testing
import DNSResolver

/// `mailgate dns query` and `mailgate check dnsbl` against a fixture server on loopback.
@Suite struct DNSCLITests {
    static let fixtures = """
    multi.test. 300 IN TXT "v=spf1 " "-all"
    mx.test. 300 IN MX 10 mx1.test.
    1.2.0.192.in-addr.arpa. 300 IN PTR a.test.
    broken.test. SERVFAIL
    1.2.0.192.broken.test. SERVFAIL
    2.0.0.127.bl.test. 300 IN A 127.0.0.2
    1.2.0.192.bl.test. 300 IN A 127.0.0.3
    1.2.0.192.bl.test. 300 IN TXT "listed for spam"
    bl.test. SOA 60
    """

    /// Exit status and output, without the resolver's timing line on stderr.
    func run(_ args: [String]) async throws -> (Int32, String) {
        let (st, out) = try await runProgram(CLITests.binary, args)
        return (st, out.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix(";;") }.joined(separator: "\n"))
    }

    @Test func dnsQueryPrintsEachKindOfAnswer() async throws {
        let s = try DNSFixtureServer(fixtures: Self.fixtures)
        try await s.start()
        let (s1, o1) = try await run(["dns", "query", "multi.test", "TXT", "--server", s.address])
        #expect(s1 == 0)
        #expect(o1.hasPrefix("multi.test TXT \"v=spf1 -all\"\n"), "\(o1)")
        let (_, o2) = try await run(["dns", "query", "192.0.2.1", "PTR", "--server", s.address])
        #expect(o2.hasPrefix("1.2.0.192.in-addr.arpa PTR a.test\n"), "\(o2)")
        let (_, o3) = try await run(["dns", "query", "nowhere.test", "A", "--server", s.address])
        #expect(o3.hasPrefix("nowhere.test A: NXDOMAIN\n"), "\(o3)")
        let (s4, o4) = try await run(["dns", "query", "broken.test", "MX", "--server", s.address])
        #expect(s4 == 3)
        #expect(o4.hasPrefix("broken.test MX: temporary failure: SERVFAIL\n"), "\(o4)")
        await s.stop()
    }

    @Test func checkDnsblPrintsWhatEachZoneAnswered() async throws {
        let s = try DNSFixtureServer(fixtures: Self.fixtures)
        try await s.start()
        let (st, out) = try await run(["check", "dnsbl", "192.0.2.1", "--zone", "bl.test", "--zone", "broken.test", "--dns", s.address])
        #expect(st == 1)
        #expect(out.hasPrefix("""
        bl.test: listed (127.0.0.3) "listed for spam" [block, 1.2.0.192.bl.test]
        broken.test: error: SERVFAIL [1.2.0.192.broken.test]

        """), "\(out)")
        let (st2, out2) = try await run(["check", "dnsbl", "192.0.2.2", "--zone", "bl.test", "--dns", s.address])
        #expect(st2 == 0)
        #expect(out2 == "bl.test: not listed [2.2.0.192.bl.test]\n")
        await s.stop()
    }
}

extension DNSCLITests {
    @Test func checkSpfPrintsResultExplanationAndTrace() async throws {
        let s = try DNSFixtureServer(fixtures: """
        example.test. 300 IN TXT "v=spf1 include:_spf.example.test ~all"
        _spf.example.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
        strict.test. 300 IN TXT "v=spf1 -all exp=why.strict.test"
        why.strict.test. 300 IN TXT "%{i} may not send mail for %{d}"
        """)
        try await s.start()
        let (st, out) = try await run(["check", "spf", "--ip", "192.0.2.7", "--helo", "mx.example.test", "--from", "a@example.test", "--dns", s.address])
        #expect(st == 0)
        #expect(out == """
        result: pass
        identity: mailfrom a@example.test
        domain: example.test
        mechanism: include:_spf.example.test
        lookups: 1 of 10 DNS-querying terms, 0 of 2 void lookups
        trace:
          example.test: TXT lookup
          example.test: "v=spf1 include:_spf.example.test ~all"
            _spf.example.test: TXT lookup
            _spf.example.test: "v=spf1 ip4:192.0.2.0/24 -all"
            ip4:192.0.2.0/24: match
          include:_spf.example.test: match

        """)
        let (st2, out2) = try await run(["check", "spf", "--ip", "203.0.113.9", "--helo", "x.test", "--from", "a@strict.test", "--dns", s.address])
        #expect(st2 == 1)
        #expect(out2.contains("result: fail\n"))
        #expect(out2.contains("explanation: 203.0.113.9 may not send mail for strict.test\n"))
        await s.stop()
    }
}
