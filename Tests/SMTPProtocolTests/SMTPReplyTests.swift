import Testing
import NIOCore
import SMTPProtocol

@Suite struct SMTPReplyTests {
    @Test func singleLineWithoutEnhancedCode() {
        let r = SMTPReply(220, nil, "mx.example.org ESMTP MailGate")
        #expect(r.lines == ["mx.example.org ESMTP MailGate"])
        #expect(r.encoded == "220 mx.example.org ESMTP MailGate\r\n")
        #expect(r.description == "220 mx.example.org ESMTP MailGate")
        #expect(r.summary == "220 mx.example.org ESMTP MailGate")
    }

    @Test func singleLineWithEnhancedCode() {
        let r = SMTPReply(250, "2.1.0", "Sender OK")
        #expect(r.encoded == "250 2.1.0 Sender OK\r\n")
        #expect(r.description == "250 2.1.0 Sender OK")
        #expect(r.summary == "250 2.1.0 Sender OK")
    }

    @Test func multiLineWithoutEnhancedCode() {
        let r = SMTPReply(code: 250, enhanced: nil, lines: ["mx.example.org", "PIPELINING", "SIZE 10240000"])
        #expect(r.encoded == "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n")
        #expect(r.description == "250-mx.example.org")
        #expect(r.summary == "250 mx.example.org PIPELINING SIZE 10240000")
    }

    @Test func multiLineWithEnhancedCode() {
        let r = SMTPReply(code: 550, enhanced: "5.7.1", lines: ["first", "second", "third"])
        #expect(r.encoded == "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n")
        #expect(r.summary == "550 5.7.1 first second third")
    }

    @Test func newlineInTextStartsANewReplyLine() {
        let r = SMTPReply(451, "4.3.0", "line one\nline two")
        #expect(r.lines == ["line one", "line two"])
        #expect(r.encoded == "451-4.3.0 line one\r\n451 4.3.0 line two\r\n")
    }

    @Test func emptyText() {
        #expect(SMTPReply(250, nil, "").encoded == "250 \r\n")
        #expect(SMTPReply(code: 250, enhanced: nil, lines: []).lines == [""])
        #expect(SMTPReply(code: 250, enhanced: nil, lines: []).encoded == "250 \r\n")
        #expect(SMTPReply(code: 250, enhanced: nil, lines: ["a", ""]).encoded == "250-a\r\n250 \r\n")
    }

    @Test func crlfInTextCannotInjectAProtocolLine() {
        // Through the text initialiser: CRLF (one Character) and LF split lines, and the
        // injected "reply" is only the text of a continuation line of the same reply.
        let a = SMTPReply(250, nil, "ok\r\n354 go ahead")
        #expect(a.lines == ["ok", "354 go ahead"])
        #expect(a.encoded == "250-ok\r\n250 354 go ahead\r\n")
        let a2 = SMTPReply(250, nil, "ok\n\r354 go ahead")
        #expect(a2.lines == ["ok", " 354 go ahead"])
        #expect(a2.encoded == "250-ok\r\n250  354 go ahead\r\n")

        // Through the lines initialiser: CR and LF inside a line both become spaces.
        let b = SMTPReply(code: 550, enhanced: "5.7.1", lines: ["bad\r\n250 2.0.0 OK"])
        #expect(b.lines == ["bad  250 2.0.0 OK"])
        #expect(b.encoded == "550 5.7.1 bad  250 2.0.0 OK\r\n")

        // A bare CR on its own.
        let c = SMTPReply(code: 250, enhanced: nil, lines: ["a\rb"])
        #expect(c.encoded == "250 a b\r\n")
    }

    @Test func otherControlCharactersAreReplaced() {
        let r = SMTPReply(code: 250, enhanced: nil, lines: ["a\tb\u{0}c\u{7f}d\u{1b}e"])
        #expect(r.lines == ["a b c d e"])
        #expect(r.encoded == "250 a b c d e\r\n")
        // Non-ASCII text is kept.
        #expect(SMTPReply(250, nil, "Grüße").lines == ["Grüße"])
    }

    @Test func everyEncodedLineEndsWithCRLFAndCarriesTheCode() {
        let r = SMTPReply(421, "4.7.0", "x\ny\r\nz\rw")
        let wire = r.encoded
        #expect(wire.hasSuffix("\r\n"))
        let lines = wire.split(separator: "\r\n", omittingEmptySubsequences: true)
        #expect(lines.count == 3)
        for l in lines {
            #expect(l.hasPrefix("421"))
            #expect(!l.contains("\r") && !l.contains("\n"))
        }
    }

    @Test func longLinesAreCapped() {
        let r = SMTPReply(250, nil, String(repeating: "a", count: 600))
        #expect(r.lines[0].utf8.count == 500)
    }

    @Test func classification() {
        #expect(SMTPReply(250, nil, "x").isPositive)
        #expect(SMTPReply(354, nil, "x").isPositive)
        #expect(!SMTPReply(450, nil, "x").isPositive)
        #expect(SMTPReply(450, nil, "x").isTransient)
        #expect(!SMTPReply(450, nil, "x").isPermanent)
        #expect(SMTPReply(550, nil, "x").isPermanent)
        #expect(!SMTPReply(550, nil, "x").isTransient)
        #expect(!SMTPReply(399, nil, "x").isTransient)
    }

    @Test func wellKnownReplies() {
        #expect(SMTPReply.ok.encoded == "250 2.0.0 OK\r\n")
        #expect(SMTPReply.lineTooLong.encoded == "500 5.5.2 Line too long\r\n")
        #expect(SMTPReply.bye.encoded == "221 2.0.0 Bye\r\n")
        #expect(SMTPReply.badSequence("need MAIL first").encoded == "503 5.5.1 need MAIL first\r\n")
        #expect(SMTPReply.downstreamUnavailable.summary == "451 4.4.1 Downstream server unavailable, try again later")
    }
}
