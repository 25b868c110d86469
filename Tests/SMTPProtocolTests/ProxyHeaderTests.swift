import Testing
@testable import SMTPProtocol

/// HAProxy's PROXY protocol, both versions, as a load balancer sends it.
@Suite struct ProxyHeaderTests {
    static let sig: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// A v2 header: command byte, family byte, then the address block and TLVs.
    static func v2(_ cmd: UInt8, _ fam: UInt8, _ body: [UInt8]) -> [UInt8] {
        sig + [cmd, fam, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    static let tcp4Body: [UInt8] = [203, 0, 113, 7, 192, 0, 2, 25, 0x12, 0x67, 0x00, 0x19]

    @Test func version1() {
        let h = Array("PROXY TCP4 203.0.113.7 192.0.2.25 4711 25\r\nEHLO".utf8)
        #expect(ProxyHeaderParser.parse(h) == .header(ProxyHeader(version: 1, command: .proxy, source: (IPAddress("203.0.113.7")!, 4711),
                                                                  destination: (IPAddress("192.0.2.25")!, 25)), length: h.count - 4))
        let six = Array("PROXY TCP6 2001:db8::7 2001:db8::25 65535 0\r\n".utf8)
        #expect(ProxyHeaderParser.parse(six) == .header(ProxyHeader(version: 1, command: .proxy, source: (IPAddress("2001:db8::7")!, 65535),
                                                                    destination: (IPAddress("2001:db8::25")!, 0)), length: six.count))
        let unknown = Array("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".utf8)
        #expect(ProxyHeaderParser.parse(unknown) == .header(ProxyHeader(version: 1, command: .unknown), length: unknown.count))
    }

    @Test func aHeaderIsIncompleteUntilItsLastOctet() {
        let v1 = Array("PROXY TCP4 203.0.113.7 192.0.2.25 4711 25\r\n".utf8)
        let v2 = Self.v2(0x21, 0x11, Self.tcp4Body)
        for whole in [v1, v2] {
            for n in 1..<whole.count { #expect(ProxyHeaderParser.parse(whole.prefix(n)) == .incomplete, "\(n)") }
        }
    }

    @Test(arguments: [
        ("EHLO client.example.org\r\n", "not a PROXY protocol header"),
        ("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1 protocol 'UDP4' is not TCP4, TCP6 or UNKNOWN"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY v1 header needs source, destination and two ports"),
        ("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "PROXY v1 header needs source, destination and two ports"),
        ("PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "PROXY v1 address is not IPv4"),
        ("PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "PROXY v1 address is not IPv6"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 065 25\r\n", "PROXY v1 port is not 0 to 65535"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 25\r\n", "PROXY v1 port is not 0 to 65535"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 -1 25\r\n", "PROXY v1 port is not 0 to 65535"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY v1 header does not end with CRLF"),
    ])
    func invalidVersion1(_ text: String, _ why: String) {
        #expect(ProxyHeaderParser.parse(Array(text.utf8)) == .invalid(why))
    }

    @Test func aVersion1HeaderEndsWithin107Octets() {
        let long = Array(("PROXY UNKNOWN " + String(repeating: "x", count: 100)).utf8)
        #expect(ProxyHeaderParser.parse(long) == .invalid("PROXY v1 header longer than 107 octets"))
        let fits = Array(("PROXY UNKNOWN " + String(repeating: "x", count: 91) + "\r\n").utf8)
        #expect(fits.count == 107)
        #expect(ProxyHeaderParser.parse(fits) == .header(ProxyHeader(version: 1, command: .unknown), length: 107))
    }

    @Test func version2() {
        // PROXY over TCP/IPv4 with an AWS-style TLV after the addresses, then the client's bytes.
        let tlv: [UInt8] = [0xEA, 0x00, 0x05, 0x01, 0x76, 0x70, 0x63, 0x65]
        let h = Self.v2(0x21, 0x11, Self.tcp4Body + tlv)
        #expect(ProxyHeaderParser.parse(h + Array("EHLO".utf8)) == .header(
            ProxyHeader(version: 2, command: .proxy, source: (IPAddress("203.0.113.7")!, 4711), destination: (IPAddress("192.0.2.25")!, 25)),
            length: 16 + 12 + tlv.count))
        let v6 = Self.v2(0x21, 0x21, [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [7]
                         + [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [0x25] + [0xC0, 0x00, 0x00, 0x19])
        #expect(ProxyHeaderParser.parse(v6) == .header(
            ProxyHeader(version: 2, command: .proxy, source: (IPAddress("2001:db8::7")!, 49152), destination: (IPAddress("2001:db8::25")!, 25)),
            length: 52))
        // LOCAL (a health check) carries no addresses worth reading.
        #expect(ProxyHeaderParser.parse(Self.v2(0x20, 0x00, [])) == .header(ProxyHeader(version: 2, command: .local), length: 16))
        #expect(ProxyHeaderParser.parse(Self.v2(0x20, 0x11, Self.tcp4Body)) == .header(ProxyHeader(version: 2, command: .local), length: 28))
        // UDP, unix sockets and AF_UNSPEC: proxied from somewhere we cannot name.
        for fam: UInt8 in [0x12, 0x31, 0x00] {
            #expect(ProxyHeaderParser.parse(Self.v2(0x21, fam, Self.tcp4Body)) == .header(ProxyHeader(version: 2, command: .unknown), length: 28))
        }
    }

    @Test func invalidVersion2() {
        #expect(ProxyHeaderParser.parse(Self.v2(0x11, 0x11, Self.tcp4Body)) == .invalid("PROXY v2 header with version 1"))
        #expect(ProxyHeaderParser.parse(Self.v2(0x22, 0x11, Self.tcp4Body)) == .invalid("PROXY v2 command 2 is neither LOCAL nor PROXY"))
        #expect(ProxyHeaderParser.parse(Self.v2(0x21, 0x11, Array(Self.tcp4Body.prefix(11)))) == .invalid("PROXY v2 address block of 11 octets is too short"))
        #expect(ProxyHeaderParser.parse(Self.v2(0x21, 0x21, Self.tcp4Body)) == .invalid("PROXY v2 address block of 12 octets is too short"))
        // A length over our bound is refused from the 16 octets that announce it.
        let huge = Self.sig + [0x21, 0x11, 0xFF, 0xFF]
        #expect(ProxyHeaderParser.parse(huge) == .invalid("PROXY v2 header of 65551 octets is over the limit of 2048"))
        #expect(ProxyHeaderParser.parse(Array(Self.sig.prefix(5)) + [0x41]) == .invalid("not a PROXY protocol header"))
    }

    /// An IPv4-mapped IPv6 client is the IPv4 client it maps, in both versions.
    @Test func mappedAddressesFoldToIPv4() {
        let v1 = Array("PROXY TCP6 ::ffff:203.0.113.7 ::ffff:192.0.2.25 4711 25\r\n".utf8)
        #expect(ProxyHeaderParser.parse(v1) == .header(ProxyHeader(version: 1, command: .proxy, source: (IPAddress("203.0.113.7")!, 4711),
                                                                   destination: (IPAddress("192.0.2.25")!, 25)), length: v1.count))
        let mapped: [UInt8] = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF]
        let v2 = Self.v2(0x21, 0x21, mapped + [203, 0, 113, 7] + mapped + [192, 0, 2, 25] + [0x12, 0x67, 0, 25])
        guard case .header(let h, _) = ProxyHeaderParser.parse(v2) else { Issue.record("no header"); return }
        #expect(h.source?.address == IPAddress("203.0.113.7") && h.source?.address.isIPv4 == true)
    }
}
