import Testing
import NIOCore
import SMTPProtocol

@Suite struct AddressParserTests {
    @Test(arguments: [
        "example.org", "EXAMPLE.org", "a", "mx-1.example.org", "example.org.", "1.2.3.4", "x1.y2",
        String(repeating: "a", count: 63) + ".example",
    ])
    func validDomains(_ d: String) {
        #expect(AddressParser.isDomain(Substring(d), allowUTF8: false))
    }

    @Test(arguments: [
        "", ".", "..", "a..b", ".example.org", "-a.org", "a-.org", "a_b.org", "exa mple.org", "example.org..",
        "[1.2.3.4]", "a@b", String(repeating: "a", count: 64) + ".example",
    ])
    func invalidDomains(_ d: String) {
        #expect(!AddressParser.isDomain(Substring(d), allowUTF8: false))
    }

    @Test func domainLengthLimit() {
        // 4 labels of 63 octets and 3 dots = 255 octets: the longest valid domain.
        let label = String(repeating: "a", count: 63)
        let d255 = [label, label, label, label].joined(separator: ".")
        #expect(d255.utf8.count == 255)
        #expect(AddressParser.isDomain(Substring(d255), allowUTF8: false))
        let d257 = d255 + ".b"
        #expect(!AddressParser.isDomain(Substring(d257), allowUTF8: false))
    }

    @Test func utf8Domains() {
        #expect(!AddressParser.isDomain("bücher.example", allowUTF8: false))
        #expect(AddressParser.isDomain("bücher.example", allowUTF8: true))
        #expect(AddressParser.isDomain("xn--bcher-kva.example", allowUTF8: false))
    }

    @Test func ipv4AddressLiterals() {
        #expect(AddressParser.parseAddressLiteral("[1.2.3.4]") == .v4(0x0102_0304))
        #expect(AddressParser.parseAddressLiteral("[192.0.2.255]") == IPAddress("192.0.2.255"))
        #expect(AddressParser.parseAddressLiteral("[0.0.0.0]") == .v4(0))
    }

    @Test func ipv6AddressLiterals() {
        #expect(AddressParser.parseAddressLiteral("[IPv6:2001:db8::1]") == .v6(0x2001_0db8_0000_0000, 1))
        #expect(AddressParser.parseAddressLiteral("[ipv6:::1]") == .v6(0, 1))
        #expect(AddressParser.parseAddressLiteral("[IPV6:2001:DB8::1]") == IPAddress("2001:db8::1"))
        // A mapped IPv4 address folds to IPv4.
        #expect(AddressParser.parseAddressLiteral("[IPv6:::ffff:1.2.3.4]") == .v4(0x0102_0304))
    }

    @Test(arguments: [
        "[1.2.3]", "[300.1.1.1]", "[1.2.3.4.5]", "1.2.3.4", "[1.2.3.4", "1.2.3.4]", "[]", "[ 1.2.3.4]",
        "[1.2.3.-4]", "[a.b.c.d]", "[1.2.3.04444]", "[2001:db8::1]", "[IPv6:1.2.3.4]", "[IPv6:zz::1]",
        "[IPv6:]", "[IPv6:2001:db8::1", "[1..3.4]",
    ])
    func badAddressLiterals(_ s: String) {
        #expect(AddressParser.parseAddressLiteral(Substring(s)) == nil)
    }

    @Test func generalAddressLiterals() {
        #expect(AddressParser.isAddressLiteral("[1.2.3.4]"))
        #expect(AddressParser.isAddressLiteral("[IPv6:2001:db8::1]"))
        #expect(AddressParser.isAddressLiteral("[x-tag:some-content]"))
        #expect(!AddressParser.isAddressLiteral("[x-tag:]"))
        #expect(!AddressParser.isAddressLiteral("[-bad:content]"))
        #expect(!AddressParser.isAddressLiteral("[1.2.3]"))
        #expect(!AddressParser.isAddressLiteral("[x-tag:a[b]"))
    }

    @Test func localParts() {
        #expect(AddressParser.isLocalPart("alice", allowUTF8: false))
        #expect(AddressParser.isLocalPart("a.b+tag", allowUTF8: false))
        #expect(AddressParser.isLocalPart("!#$%&'*+-/=?^_`{|}~", allowUTF8: false))
        #expect(AddressParser.isLocalPart("\"a b\"", allowUTF8: false))
        #expect(AddressParser.isLocalPart("\"a\\\\b\"", allowUTF8: false))
        #expect(AddressParser.isLocalPart("\"\"", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("", allowUTF8: false))
        #expect(!AddressParser.isLocalPart(".a", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("a.", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("a..b", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("a b", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("a(b)", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("\"a", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("\"a\"b\"", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("\"a\\\"", allowUTF8: false))
        #expect(!AddressParser.isLocalPart("jörg", allowUTF8: false))
        #expect(AddressParser.isLocalPart("jörg", allowUTF8: true))
    }

    @Test func parseMailbox() throws {
        let m = try AddressParser.parseMailbox("alice@Example.ORG.", allowUTF8: false)
        #expect(m.localPart == "alice")
        #expect(m.domain == "Example.ORG.")
        #expect(m.domainKey == "example.org")
        #expect(m.description == "alice@Example.ORG.")
        #expect(m.isASCII)
        let r = try AddressParser.parseMailbox("@hop1.example,@hop2.example:bob@c.example", allowUTF8: false)
        #expect(r == Mailbox(localPart: "bob", domain: "c.example"))
        #expect(throws: AddressError.needsSMTPUTF8) { try AddressParser.parseMailbox("jörg@example.org", allowUTF8: false) }
        #expect(throws: AddressError.syntax("bad domain")) { try AddressParser.parseMailbox("a@", allowUTF8: false) }
        #expect(throws: AddressError.syntax("bad local part")) { try AddressParser.parseMailbox("a..b@x", allowUTF8: false) }
        #expect(throws: AddressError.syntax("bad source route")) { try AddressParser.parseMailbox("@x", allowUTF8: false) }
        #expect(!Mailbox(localPart: "jörg", domain: "example.org").isASCII)
    }

    @Test func splitPath() throws {
        let a = try #require(AddressParser.splitPath("<a@b.c> SIZE=1", bracketsRequired: true))
        #expect(a.path == "a@b.c")
        #expect(a.bracketed)
        #expect(a.rest == " SIZE=1")
        let b = try #require(AddressParser.splitPath("<\"x >y\"@b.c>", bracketsRequired: true))
        #expect(b.path == "\"x >y\"@b.c")
        #expect(b.rest == "")
        let c = try #require(AddressParser.splitPath("a@b.c SIZE=1", bracketsRequired: false))
        #expect(c.path == "a@b.c")
        #expect(!c.bracketed)
        #expect(c.rest == " SIZE=1")
        #expect(AddressParser.splitPath("a@b.c", bracketsRequired: true) == nil)
        #expect(AddressParser.splitPath("<a@b.c", bracketsRequired: true) == nil)
        #expect(AddressParser.splitPath("<a@b.c>x", bracketsRequired: true) == nil)
        #expect(AddressParser.splitPath("", bracketsRequired: false) == nil)
    }
}

@Suite struct HeloArgumentTests {
    @Test func fqdn() {
        #expect(HeloArgument("mail.example.org") == .fqdn("mail.example.org"))
        #expect(HeloArgument("mail.example.org.") == .fqdn("mail.example.org."))
        #expect(HeloArgument("MX1.Example.ORG") == .fqdn("MX1.Example.ORG"))
        #expect(HeloArgument("host.example.co2") == .fqdn("host.example.co2"))
        #expect(HeloArgument("bücher.example") == .fqdn("bücher.example"))
    }

    @Test func addressLiterals() {
        #expect(HeloArgument("[192.0.2.1]") == .addressLiteral(.v4(0xc000_0201)))
        #expect(HeloArgument("[IPv6:2001:db8::25]") == .addressLiteral(IPAddress("2001:db8::25")!))
        #expect(HeloArgument("[1.2.3]") == .invalid("malformed address literal"))
        #expect(HeloArgument("[300.1.1.1]") == .invalid("malformed address literal"))
        #expect(HeloArgument("[mail.example.org]") == .invalid("malformed address literal"))
    }

    @Test func bareIPIsInvalid() {
        #expect(HeloArgument("192.0.2.1") == .invalid("bare IP address; an address literal needs brackets"))
        #expect(HeloArgument("2001:db8::1") == .invalid("bare IP address; an address literal needs brackets"))
    }

    @Test func singleLabelIsInvalid() {
        #expect(HeloArgument("localhost") == .invalid("not a fully qualified domain name"))
        #expect(HeloArgument("localhost.") == .invalid("not a fully qualified domain name"))
        #expect(HeloArgument("MYPC") == .invalid("not a fully qualified domain name"))
    }

    @Test func numericTopLevelLabelIsInvalid() {
        #expect(HeloArgument("host.123") == .invalid("numeric top-level label"))
        #expect(HeloArgument("a.b.1.") == .invalid("numeric top-level label"))
        #expect(HeloArgument("1.2.3") == .invalid("numeric top-level label"))
    }

    @Test func badSyntaxIsInvalid() {
        #expect(HeloArgument("bad_host.example") == .invalid("not a valid domain name"))
        #expect(HeloArgument("-x.example") == .invalid("not a valid domain name"))
        #expect(HeloArgument("a..example") == .invalid("not a valid domain name"))
        #expect(HeloArgument("") == .invalid("not a valid domain name"))
    }
}
