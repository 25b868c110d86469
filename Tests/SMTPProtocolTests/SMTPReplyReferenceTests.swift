import Testing
@testable import SMTPProtocol

@Suite struct SMTPReplyReferenceTests {
    @Test func negativeRepliesEndWithTheID() {
        #expect(SMTPReply(550, "5.7.1", "Relay access denied").referencing("ab12").encoded == "550 5.7.1 Relay access denied [id ab12]\r\n")
        #expect(SMTPReply(421, nil, "").referencing("ab12").encoded == "421 [id ab12]\r\n")
        #expect(SMTPReply(554, "5.7.1", "one\ntwo").referencing("ab12").encoded == "554-5.7.1 one\r\n554 5.7.1 two [id ab12]\r\n")
    }

    @Test func positiveRepliesAndFullLinesStayAsTheyAre() {
        let ok = SMTPReply(250, "2.0.0", "OK")
        #expect(ok.referencing("ab12") == ok)
        #expect(SMTPReply(354, nil, "go ahead").referencing("ab12").encoded == "354 go ahead\r\n")
        // "550 5.7.1 " and 479 octets of text: the 22-octet tag and CRLF would make 513.
        let long = SMTPReply(550, "5.7.1", String(repeating: "x", count: 479))
        #expect(long.referencing("0123456789abcdef") == long)
        let fits = SMTPReply(550, "5.7.1", String(repeating: "x", count: 478))
        let tagged = fits.referencing("0123456789abcdef").encoded
        #expect(tagged.utf8.count == 512 && tagged.hasSuffix(" [id 0123456789abcdef]\r\n"))
    }
}
