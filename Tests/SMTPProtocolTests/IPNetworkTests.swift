import Testing
import NIOCore
import SMTPProtocol

private func ip(_ s: String) -> IPAddress {
    guard let a = IPAddress(s) else { fatalError("bad test address \(s)") }
    return a
}

@Suite struct IPAddressTests {
    @Test func parsesIPv4() {
        #expect(IPAddress("127.0.0.1") == .v4(0x7f00_0001))
        #expect(IPAddress("255.255.255.255") == .v4(0xffff_ffff))
        #expect(IPAddress("192.0.2.33")?.description == "192.0.2.33")
        #expect(IPAddress("192.0.2.33")?.isIPv4 == true)
    }

    @Test func parsesIPv6() {
        #expect(IPAddress("::1") == .v6(0, 1))
        #expect(IPAddress("2001:db8::1") == .v6(0x2001_0db8_0000_0000, 1))
        #expect(IPAddress("2001:DB8::1")?.description == "2001:db8::1")
        #expect(IPAddress("::1")?.isIPv4 == false)
    }

    @Test func foldsIPv4MappedIPv6ToIPv4() {
        #expect(IPAddress("::ffff:127.0.0.1") == .v4(0x7f00_0001))
        #expect(IPAddress("::ffff:7f00:1") == .v4(0x7f00_0001))
        #expect(IPAddress("::ffff:127.0.0.1")?.isIPv4 == true)
        #expect(IPAddress("::ffff:127.0.0.1")?.description == "127.0.0.1")
        // Not mapped: ::1:ffff:… and the IPv4-compatible form stay IPv6.
        #expect(IPAddress("::fffe:7f00:1")?.isIPv4 == false)
    }

    @Test(arguments: ["", "foo", "1.2.3", "1.2.3.4.5", "300.1.1.1", "1.2.3.4 ", "::g", "1:2:3:4:5:6:7:8:9", "[::1]"])
    func rejectsGarbage(_ s: String) {
        #expect(IPAddress(s) == nil)
    }
}

@Suite struct IPNetworkTests {
    @Test func wildcardOneOctet() throws {
        let n = try #require(IPNetwork("127.*"))
        #expect(n.address == .v4(0x7f00_0000))
        #expect(n.prefix == 8)
        #expect(n.description == "127.0.0.0/8")
        #expect(n.contains(ip("127.0.0.1")))
        #expect(n.contains(ip("127.255.1.2")))
        #expect(!n.contains(ip("128.0.0.1")))
        #expect(!n.contains(ip("126.255.255.255")))
    }

    @Test func wildcardTwoOctets() throws {
        let n = try #require(IPNetwork("10.1.*.*"))
        #expect(n.address == .v4(0x0a01_0000))
        #expect(n.prefix == 16)
        #expect(n.contains(ip("10.1.0.0")))
        #expect(n.contains(ip("10.1.255.255")))
        #expect(!n.contains(ip("10.2.0.1")))
        #expect(!n.contains(ip("11.1.0.1")))
    }

    @Test func cidrPrefix() throws {
        let n = try #require(IPNetwork("127.0.0.0/8"))
        #expect(n.address == .v4(0x7f00_0000))
        #expect(n.prefix == 8)
        #expect(n.contains(ip("127.9.9.9")))
        #expect(!n.contains(ip("128.0.0.0")))

        let m = try #require(IPNetwork("192.168.10.0/23"))
        #expect(m.contains(ip("192.168.11.255")))
        #expect(!m.contains(ip("192.168.12.0")))
        #expect(!m.contains(ip("192.168.9.255")))
    }

    @Test func dottedNetmask() throws {
        let n = try #require(IPNetwork("127.0.0.0/255.0.0.0"))
        #expect(n.prefix == 8)
        #expect(n.contains(ip("127.1.1.1")))
        #expect(!n.contains(ip("10.1.1.1")))
        #expect(IPNetwork("192.168.0.0/255.255.252.0")?.prefix == 22)
        #expect(IPNetwork("10.0.0.0/255.255.255.255")?.prefix == 32)
        #expect(IPNetwork("10.0.0.0/0.0.0.0")?.prefix == 0)
    }

    @Test(arguments: ["10.0.0.0/255.0.255.0", "10.0.0.0/0.255.0.0", "10.0.0.0/255.255.255.253", "10.0.0.0/128.0.0.1"])
    func nonContiguousNetmaskIsRejected(_ s: String) {
        #expect(IPNetwork(s) == nil)
    }

    @Test func plainIPv4IsAHostRoute() throws {
        let n = try #require(IPNetwork("192.0.2.7"))
        #expect(n.prefix == 32)
        #expect(n.contains(ip("192.0.2.7")))
        #expect(!n.contains(ip("192.0.2.8")))
        #expect(!n.contains(ip("192.0.2.6")))
    }

    @Test func plainIPv6IsAHostRoute() throws {
        let n = try #require(IPNetwork("2001:db8::1"))
        #expect(n.prefix == 128)
        #expect(n.contains(ip("2001:db8::1")))
        #expect(!n.contains(ip("2001:db8::2")))
        #expect(!n.contains(ip("2001:db8:0:1::1")))
    }

    @Test func ipv6Prefix() throws {
        let n = try #require(IPNetwork("2001:db8::/32"))
        #expect(n.prefix == 32)
        #expect(n.description == "2001:db8::/32")
        #expect(n.contains(ip("2001:db8::1")))
        #expect(n.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")))
        #expect(!n.contains(ip("2001:db9::1")))
        #expect(!n.contains(ip("2001:db7:ffff::1")))
    }

    @Test func ipv6PrefixLongerThan64() throws {
        let n = try #require(IPNetwork("2001:db8::1:0:0:0/80"))
        #expect(n.contains(ip("2001:db8::1:0:0:5")))
        #expect(n.contains(ip("2001:db8::1:ffff:ffff:ffff")))
        #expect(!n.contains(ip("2001:db8::2:0:0:5")))
        #expect(!n.contains(ip("2001:db9::1:0:0:5")))
        let m = try #require(IPNetwork("2001:db8::/127"))
        #expect(m.contains(ip("2001:db8::1")))
        #expect(!m.contains(ip("2001:db8::2")))
        let s = try #require(IPNetwork("2001:db8::/64"))
        #expect(s.contains(ip("2001:db8::ffff:ffff:ffff:ffff")))
        #expect(!s.contains(ip("2001:db8:0:1::")))
    }

    @Test func bracketedIPv6() throws {
        let n = try #require(IPNetwork("[::1]/128"))
        #expect(n.address == .v6(0, 1))
        #expect(n.prefix == 128)
        #expect(n.contains(ip("::1")))
        #expect(!n.contains(ip("::2")))
        #expect(IPNetwork("[2001:db8::]/32")?.prefix == 32)
        #expect(IPNetwork("[::1]")?.prefix == 128)
    }

    @Test func ipv4MappedClientMatchesIPv4Network() throws {
        let n = try #require(IPNetwork("127.0.0.0/8"))
        #expect(n.contains(ip("::ffff:127.0.0.1")))
        #expect(!n.contains(ip("::ffff:10.0.0.1")))
        // A mapped address written as a network folds to IPv4 too.
        let m = try #require(IPNetwork("::ffff:10.1.2.3"))
        #expect(m.address == .v4(0x0a01_0203))
        #expect(m.prefix == 32)
        #expect(m.contains(ip("10.1.2.3")))
    }

    @Test func familiesNeverMix() throws {
        #expect(!(try #require(IPNetwork("0.0.0.0/0"))).contains(ip("::1")))
        #expect(!(try #require(IPNetwork("::/0"))).contains(ip("1.2.3.4")))
        #expect(!(try #require(IPNetwork("::1/128"))).contains(ip("0.0.0.1")))
    }

    @Test func zeroPrefixMatchesEverythingOfItsFamily() throws {
        let v4 = try #require(IPNetwork("0.0.0.0/0"))
        #expect(v4.prefix == 0)
        #expect(v4.contains(ip("203.0.113.9")))
        #expect(v4.contains(ip("255.255.255.255")))
        let v6 = try #require(IPNetwork("::/0"))
        #expect(v6.contains(ip("2001:db8::1")))
        #expect(v6.contains(ip("ffff::1")))
        // The host part of the written address does not matter with /0.
        #expect((try #require(IPNetwork("10.9.8.7/0"))).contains(ip("192.0.2.1")))
    }

    @Test func whitespaceAroundIsTrimmed() {
        #expect(IPNetwork("  10.0.0.0/8\t")?.prefix == 8)
    }

    @Test(arguments: [
        "", " ", "foo", "1.2.3.4/33", "1.2.3.4/-1", "1.2.3.4/x", "1.2.3.4/", "::1/129", "300.1.1.1",
        "1.2.3", "*.1", "10.*.1.*", "300.*", "1.2.3.4.*", "a.*", "2001:db8::/255.255.0.0", "1.2.3.4/8/8",
        "[::1/128]", "10.0.0.0/255.0.0",
    ])
    func rejectsGarbage(_ s: String) {
        #expect(IPNetwork(s) == nil)
    }
}
