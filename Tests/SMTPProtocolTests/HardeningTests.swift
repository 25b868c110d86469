import Testing
import NIOCore
import SMTPProtocol

/// Regression tests of the hardening issue for the protocol layer: each failed before.
@Suite struct ProtocolHardeningTests {
    /// An over-long line that arrives in one read keeps only its head, in storage of its own:
    /// 128 queued lines can no longer hold 128 read buffers.
    @Test func anOverlongLineInOneReadKeepsOnlyItsHead() throws {
        var framer = SMTPLineFramer(maxLineLength: 1000)
        var buf = ByteBuffer(string: String(repeating: "x", count: 1 << 20) + "\r\nNOOP\r\n")
        let first = framer.nextLine(&buf)
        let long = try #require(first)
        #expect(long.overflow)
        #expect(long.wireLength == (1 << 20) + 2)
        #expect(long.ending == .crlf)
        #expect(long.bytes.readableBytes == SMTPLineFramer.overflowHead)
        #expect(long.bytes.storageCapacity < 4096)
        let second = framer.nextLine(&buf)
        let next = try #require(second)
        #expect(String(buffer: next.bytes) == "NOOP")
        // Ordinary lines do not share the read buffer either.
        #expect(next.bytes.storageCapacity < 4096)
    }

    @Test func anOverlongLineOverSeveralReadsKeepsOnlyItsHead() throws {
        var framer = SMTPLineFramer(maxLineLength: 1000)
        var a = ByteBuffer(string: String(repeating: "y", count: 70_000))
        let none = framer.nextLine(&a)
        #expect(none == nil)
        var b = ByteBuffer(string: String(repeating: "y", count: 70_000) + "\r\n")
        let got = framer.nextLine(&b)
        let line = try #require(got)
        #expect(line.overflow)
        #expect(line.bytes.readableBytes == SMTPLineFramer.overflowHead)
    }

    /// One field with endless continuation lines stops growing at the limit.
    @Test func theHeaderAssemblerIsBounded() {
        var h = HeaderFieldAssembler(maxOctets: 1000)
        #expect(h.feed(Array("Subject: a".utf8)) == nil)
        for _ in 0..<200 { #expect(h.feed(Array(" continued".utf8)) == nil) }
        #expect(h.tooLarge)
        #expect(h.finish() == nil)
    }

    @Test func theHeaderAssemblerJoinsFoldedFields() {
        var h = HeaderFieldAssembler(maxOctets: 10_000)
        #expect(h.feed(Array("To: a@b".utf8)) == nil)
        #expect(h.feed(Array("\tc@d".utf8)) == nil)
        #expect(h.feed(Array("From: x".utf8)) == Array("To: a@b\r\n\tc@d".utf8))
        #expect(h.finish() == Array("From: x".utf8))
        #expect(h.octets == 7 + 2 + 4 + 2 + 7 + 2)
    }

    /// What the client writes never becomes structure in our trace fields.
    @Test func clientTextIsQuotedInHeaderValues() {
        #expect(HeaderText.pvalue("alice@example.com") == "alice@example.com")
        #expect(HeaderText.pvalue("@example.com") == "@example.com")
        #expect(HeaderText.pvalue("\"x;dkim=pass header.d=bank.example\"@a.example")
                == "\"\\\"x;dkim=pass header.d=bank.example\\\"@a.example\"")
        #expect(HeaderText.pvalue("a b") == "\"a b\"")
        #expect(HeaderText.quoted("x\r\nInjected: yes") == "\"xInjected: yes\"")
        #expect(HeaderText.comment("a) b (c\\") == "a\\) b \\(c\\\\")
        #expect(HeaderText.dotAtomOrQuoted("mail.example.org") == "mail.example.org")
        #expect(HeaderText.dotAtomOrQuoted("evil; spf=pass") == "\"evil; spf=pass\"")
    }

    @Test func routingCharactersInLocalParts() {
        #expect(Mailbox(localPart: "user%remote.example", domain: "local.example").routingCharacter == "%")
        #expect(Mailbox(localPart: "remote.example!user", domain: "local.example").routingCharacter == "!")
        #expect(Mailbox(localPart: "\"user@remote.example\"", domain: "local.example").routingCharacter == "@")
        #expect(Mailbox(localPart: "\"us\\%er\"", domain: "local.example").routingCharacter == "%")
        #expect(Mailbox(localPart: "plain.user+tag", domain: "local.example").routingCharacter == nil)
        #expect(Mailbox(localPart: "u", domain: "local.example.").withoutTrailingDot.domain == "local.example")
    }
}
