import Foundation
import Testing
import NIOCore
import SMTPProtocol
@testable import DNSResolver

/// DNS answers are hostile input: a sender domain's owner chooses them.
@Suite struct WireHardeningTests {
    /// `TXT "" "v=spf1 -all"` used to kill the process (the range 1...0).
    @Test func anEmptyCharacterStringIsLegal() async throws {
        let server = try DNSFixtureServer(fixtures: """
        empty.test. 300 IN TXT "" "v=spf1 -all"
        onlyempty.test. 300 IN TXT ""
        """)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.attempts = 1
        let r = DNSResolver(config: c)
        #expect(await r.query("empty.test", .txt) == .records([.txt("v=spf1 -all")]))
        #expect(await r.query("onlyempty.test", .txt) == .records([.txt("")]))
        await server.stop()
    }

    /// An IDN sender domain is asked by its A-label, and a label with a space (SPF's %_) is
    /// asked as it is; both answers match their question (before, both were dropped as forged:
    /// SPF temperror, 451 forever).
    @Test func namesOutsideASCIIAreAskedAndAnswered() async throws {
        #expect(DNSName.asked("Bücher.Example.") == "xn--bcher-kva.example")
        #expect(DNSName.asked("a b.test") == "a\\032b.test")
        #expect(DNSName.asked("back\\slash.test") == "back\\\\slash.test")
        #expect(DNSName.asked("bad..name") == nil)
        // Plain names skip libldns: the same answer either way.
        for name in ["Mx.Example.NET.", "_dmarc.x-y.test", "1.0.0.127.zen.test", "a..b", ".", "-", String(repeating: "a", count: 64) + ".test",
                     String(repeating: "abcdefghi.", count: 26), String(repeating: "abcdefghi.", count: 25) + "abc"] {
            #expect(DNSName.asked(name) == DNSName.presentation(canonicalName(name)), "\(name)")
        }
        // Lengths are octets, not the escaped text: 63 octets with spaces still fit a label.
        let spaced = try #require(DNSName.asked(String(repeating: "a b", count: 21) + ".test"))
        #expect(DNSWire.query(name: spaced, type: .txt, id: 1) != nil)
        #expect(DNSName.asked(String(repeating: "a b", count: 22) + ".test") == nil)
        let server = try DNSFixtureServer(fixtures: """
        xn--bcher-kva.test. 300 IN TXT "v=spf1 -all"
        a\\032b.test. 300 IN A 192.0.2.7
        """)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.attempts = 1
        let r = DNSResolver(config: c)
        #expect(await r.query("bücher.test", .txt) == .records([.txt("v=spf1 -all")]))
        #expect(await r.query("a b.test", .a) == .records([.a(IPAddress("192.0.2.7")!)]))
        #expect(server.queries.contains("xn--bcher-kva.test TXT"))
        await server.stop()
    }

    /// Questions in flight are capped over all sessions; past the cap a question fails at
    /// once as a local failure (each holds a socket), and the counter says so.
    @Test func questionsInFlightAreCapped() async throws {
        let server = try DNSFixtureServer(fixtures: "silent.test. TIMEOUT\nok.test. 300 IN A 192.0.2.1\n")
        try await server.start()
        var c = ResolverConfig(servers: [NameServer("127.0.0.1:\(server.port)")!])
        c.attempts = 1
        c.timeout = 1
        c.maxInFlight = 1
        let r = DNSResolver(config: c)
        let before = DNSResolver.localFailures
        async let slow = r.query("silent.test", .a)
        try await Task.sleep(for: .milliseconds(200))
        #expect(await r.query("ok.test", .a) == .tempFail("local resource failure: more than 1 DNS queries in flight"))
        #expect(DNSResolver.localFailures > before)
        _ = await slow
        #expect(await r.query("ok.test", .a) == .records([.a(IPAddress("192.0.2.1")!)]))
        await server.stop()
    }

    /// Every truncation and every single-octet change of real answers parses or is refused,
    /// never traps (a smoke version of the fuzz target).
    @Test func mutatedAnswersNeverTrap() throws {
        let query = try #require(DNSWire.query(name: "x.test", type: .txt, id: 7))
        let q = try #require(DNSWire.parse(query))
        let answers = [
            ["x.test. 300 IN TXT \"\" \"v=spf1 -all\""], ["x.test. 300 IN MX 10 mx.x.test."],
            ["x.test. 300 IN A 192.0.2.1", "x.test. 300 IN AAAA 2001:db8::1"], ["x.test. 300 IN CNAME y.test."],
        ]
        var parsed = 0
        for a in answers {
            let wire = try #require(DNSWire.response(to: q, rcode: 0, answers: a, authority: ["test. 60 IN SOA ns.test. h.test. 1 2 3 4 60"]))
            for cut in 0...wire.count where DNSWire.parse(Array(wire.prefix(cut))) != nil { parsed += 1 }
            for i in 0..<wire.count {
                for v: UInt8 in [0, 1, 0x3f, 0x40, 0xc0, 0xff] {
                    var m = wire
                    m[i] = v
                    if DNSWire.parse(m) != nil { parsed += 1 }
                }
            }
        }
        #expect(parsed > 0)
    }
}
