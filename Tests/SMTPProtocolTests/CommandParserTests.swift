import Testing
import NIOCore
import SMTPProtocol

private func parse(_ line: String, brackets: Bool = true, utf8: Bool = false) -> Result<SMTPCommand, CommandError> {
    CommandParser.parse(line, options: CommandParserOptions(addressBracketsEnforcement: brackets), transactionUTF8: utf8)
}

private func syntax(_ code: Int, _ enhanced: String, _ text: String) -> Result<SMTPCommand, CommandError> {
    .failure(.syntax(SMTPReply(code, enhanced, text)))
}

private func params(size: Int? = nil, body: String? = nil, utf8: Bool = false) -> MailParameters {
    var p = MailParameters()
    p.size = size
    p.body = body
    p.smtpUTF8 = utf8
    return p
}

private func mail(_ local: String, _ domain: String, _ p: MailParameters = MailParameters()) -> Result<SMTPCommand, CommandError> {
    .success(.mail(.mailbox(Mailbox(localPart: local, domain: domain)), p))
}

private func rcpt(_ local: String, _ domain: String) -> Result<SMTPCommand, CommandError> {
    .success(.rcpt(Mailbox(localPart: local, domain: domain), RecipientParameters()))
}

@Suite struct HeloCommandTests {
    @Test func heloAndEhlo() {
        #expect(parse("HELO client.example.org") == .success(.helo("client.example.org")))
        #expect(parse("EHLO client.example.org") == .success(.ehlo("client.example.org")))
        #expect(parse("EHLO [192.0.2.1]") == .success(.ehlo("[192.0.2.1]")))
        // Extra words after the name are ignored; surrounding spaces trimmed.
        #expect(parse("EHLO client.example.org  some comment") == .success(.ehlo("client.example.org")))
        #expect(parse("HELO   spaced.example ") == .success(.helo("spaced.example")))
    }

    @Test func missingArgument() {
        #expect(parse("HELO") == syntax(501, "5.5.4", "Syntax: HELO hostname"))
        #expect(parse("EHLO") == syntax(501, "5.5.4", "Syntax: EHLO hostname"))
        #expect(parse("EHLO    ") == syntax(501, "5.5.4", "Syntax: EHLO hostname"))
        #expect(parse("ehlo").failureReply?.encoded == "501 5.5.4 Syntax: EHLO hostname\r\n")
    }

    @Test func controlCharactersInArgument() {
        #expect(parse("HELO a\tb") == syntax(501, "5.5.4", "Invalid characters in HELO argument"))
        #expect(parse("EHLO a\u{7f}") == syntax(501, "5.5.4", "Invalid characters in EHLO argument"))
    }

    @Test func verbsAreCaseInsensitive() {
        #expect(parse("ehlo x.example") == .success(.ehlo("x.example")))
        #expect(parse("HeLo x.example") == .success(.helo("x.example")))
        #expect(parse("mail from:<a@example.org>") == mail("a", "example.org"))
        #expect(parse("Mail From:<a@example.org>") == mail("a", "example.org"))
        #expect(parse("rcpt to:<b@example.org>") == rcpt("b", "example.org"))
        #expect(parse("data") == .success(.data))
        #expect(parse("rset") == .success(.rset))
        #expect(parse("quit") == .success(.quit))
        #expect(parse("noop") == .success(.noop))
        #expect(parse("starttls") == .success(.starttls))
    }
}

@Suite struct MailCommandTests {
    @Test func nullSender() {
        #expect(parse("MAIL FROM:<>") == .success(.mail(.null, MailParameters())))
        #expect(parse("MAIL FROM:<> SIZE=100") == .success(.mail(.null, params(size: 100))))
        #expect(ReversePath.null.description == "")
        #expect(ReversePath.null.mailbox == nil)
    }

    @Test func plainSender() {
        #expect(parse("MAIL FROM:<alice@example.org>") == mail("alice", "example.org"))
        if case .success(.mail(let path, _)) = parse("MAIL FROM:<alice@Example.ORG>") {
            #expect(path.description == "alice@Example.ORG")
            #expect(path.mailbox?.domainKey == "example.org")
        } else {
            Issue.record("MAIL not parsed")
        }
    }

    @Test func spaceAfterColonIsAccepted() {
        #expect(parse("MAIL FROM: <alice@example.org>") == mail("alice", "example.org"))
        #expect(parse("MAIL FROM:   <alice@example.org>") == mail("alice", "example.org"))
        #expect(parse("RCPT TO: <bob@example.org>") == rcpt("bob", "example.org"))
    }

    @Test func parameters() {
        #expect(parse("MAIL FROM:<a@example.org> SIZE=12345") == mail("a", "example.org", params(size: 12345)))
        #expect(parse("MAIL FROM:<a@example.org> BODY=8bitmime") == mail("a", "example.org", params(body: "8BITMIME")))
        #expect(parse("MAIL FROM:<a@example.org> BODY=7BIT") == mail("a", "example.org", params(body: "7BIT")))
        #expect(parse("MAIL FROM:<a@example.org> SMTPUTF8") == mail("a", "example.org", params(utf8: true)))
        #expect(parse("MAIL FROM:<a@example.org> size=0 body=8BITMIME smtputf8")
            == mail("a", "example.org", params(size: 0, body: "8BITMIME", utf8: true)))
        #expect(parse("MAIL FROM:<a@example.org>  SIZE=7   SMTPUTF8 ") == mail("a", "example.org", params(size: 7, utf8: true)))
    }

    @Test func unknownParameter() {
        #expect(parse("MAIL FROM:<a@example.org> FOO=bar") == syntax(555, "5.5.4", "Unsupported MAIL parameter FOO"))
        #expect(parse("MAIL FROM:<a@example.org> SIZE=10 ret=hdrs") == syntax(555, "5.5.4", "Unsupported MAIL parameter RET"))
        #expect(parse("MAIL FROM:<a@example.org> AUTH=<>") == syntax(555, "5.5.4", "Unsupported MAIL parameter AUTH"))
    }

    @Test(arguments: ["SIZE=abc", "SIZE=-1", "SIZE", "SIZE=1234567890123456789", "SIZE=1.5"])
    func badSize(_ p: String) {
        #expect(parse("MAIL FROM:<a@example.org> \(p)") == syntax(501, "5.5.4", "Bad SIZE parameter"))
    }

    @Test func badBodyAndSMTPUTF8Values() {
        #expect(parse("MAIL FROM:<a@example.org> BODY=BINARYMIME") == syntax(501, "5.5.4", "Bad BODY parameter (7BIT or 8BITMIME)"))
        #expect(parse("MAIL FROM:<a@example.org> BODY") == syntax(501, "5.5.4", "Bad BODY parameter (7BIT or 8BITMIME)"))
        #expect(parse("MAIL FROM:<a@example.org> SMTPUTF8=yes") == syntax(501, "5.5.4", "SMTPUTF8 takes no value"))
    }

    @Test func malformedParameterSyntax() {
        #expect(parse("MAIL FROM:<a@example.org> =5") == syntax(501, "5.5.4", "Bad MAIL parameter syntax"))
        #expect(parse("MAIL FROM:<a@example.org> SIZE=") == syntax(501, "5.5.4", "Bad MAIL parameter syntax"))
        #expect(parse("MAIL FROM:<a@example.org> SI_ZE=1") == syntax(501, "5.5.4", "Bad MAIL parameter syntax"))
    }

    @Test func parametersMustBeSeparatedFromThePath() {
        #expect(parse("MAIL FROM:<a@example.org>SIZE=5") == syntax(501, "5.1.7", "Bad sender address syntax"))
    }

    @Test func missingFromKeyword() {
        #expect(parse("MAIL <a@example.org>") == syntax(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        #expect(parse("MAIL") == syntax(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        #expect(parse("MAIL TO:<a@example.org>") == syntax(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
    }

    @Test func bracketEnforcement() {
        // Enforced (the default): no brackets is a syntax error.
        #expect(parse("MAIL FROM:user@x") == syntax(501, "5.1.7", "Bad sender address syntax"))
        #expect(CommandParser.parse("MAIL FROM:user@x") == syntax(501, "5.1.7", "Bad sender address syntax"))
        #expect(parse("MAIL FROM:<user@x") == syntax(501, "5.1.7", "Bad sender address syntax"))
        #expect(parse("RCPT TO:user@x") == syntax(501, "5.1.3", "Bad recipient address syntax"))
        // Not enforced: James' addressBracketsEnforcement=false.
        #expect(parse("MAIL FROM:user@x", brackets: false) == mail("user", "x"))
        #expect(parse("MAIL FROM:user@x SIZE=10", brackets: false) == mail("user", "x", params(size: 10)))
        #expect(parse("RCPT TO:user@x", brackets: false) == rcpt("user", "x"))
        // Brackets still work, and an empty unbracketed path is no null sender.
        #expect(parse("MAIL FROM:<user@x>", brackets: false) == mail("user", "x"))
        #expect(parse("MAIL FROM:<>", brackets: false) == .success(.mail(.null, MailParameters())))
        #expect(parse("MAIL FROM:", brackets: false) == syntax(501, "5.1.7", "Bad sender address syntax"))
    }

    @Test func sourceRouteIsAcceptedAndStripped() {
        #expect(parse("MAIL FROM:<@a.example,@b.example:u@c.example>") == mail("u", "c.example"))
        #expect(parse("RCPT TO:<@a.example,@b.example:u@c.example>") == rcpt("u", "c.example"))
        #expect(parse("RCPT TO:<@a.example:u@c.example>") == rcpt("u", "c.example"))
        #expect(parse("RCPT TO:<@a.example,b.example:u@c.example>")
            == syntax(501, "5.1.3", "Bad recipient address syntax: bad source route"))
        #expect(parse("RCPT TO:<@a.example>")
            == syntax(501, "5.1.3", "Bad recipient address syntax: bad source route"))
    }

    @Test func quotedLocalPartWithSpaceAndAngleBracket() {
        #expect(parse("RCPT TO:<\"a >b\"@example.org>") == rcpt("\"a >b\"", "example.org"))
        #expect(parse("MAIL FROM:<\"a >b\"@example.org> SIZE=5") == mail("\"a >b\"", "example.org", params(size: 5)))
        #expect(parse("RCPT TO:<\"x@y\"@example.org>") == rcpt("\"x@y\"", "example.org"))
        #expect(parse("RCPT TO:<\"q\\\"x\"@example.org>") == rcpt("\"q\\\"x\"", "example.org"))
    }

    @Test func localPartLength() {
        let l64 = String(repeating: "a", count: 64)
        let l65 = String(repeating: "a", count: 65)
        #expect(parse("MAIL FROM:<\(l64)@example.org>") == mail(l64, "example.org"))
        #expect(parse("RCPT TO:<\(l64)@example.org>") == rcpt(l64, "example.org"))
        #expect(parse("MAIL FROM:<\(l65)@example.org>")
            == syntax(501, "5.1.7", "Address too long: local part longer than 64 octets"))
        #expect(parse("RCPT TO:<\(l65)@example.org>")
            == syntax(501, "5.1.3", "Address too long: local part longer than 64 octets"))
    }

    @Test func pathLength() {
        let long = String(repeating: "a", count: 60) + "@" + Array(repeating: String(repeating: "b", count: 60), count: 4).joined(separator: ".")
        #expect(parse("RCPT TO:<\(long)>") == syntax(501, "5.1.3", "Address too long: path longer than 256 octets"))
    }

    @Test func badAddresses() {
        #expect(parse("MAIL FROM:<nodomain>") == syntax(501, "5.1.7", "Bad sender address syntax: address must be local-part@domain"))
        #expect(parse("MAIL FROM:<a@-bad.example>") == syntax(501, "5.1.7", "Bad sender address syntax: bad domain"))
        #expect(parse("RCPT TO:<a..b@example.org>") == syntax(501, "5.1.3", "Bad recipient address syntax: bad local part"))
        #expect(parse("RCPT TO:<@example.org>") == syntax(501, "5.1.3", "Bad recipient address syntax: bad source route"))
        #expect(parse("RCPT TO:<>") == syntax(501, "5.1.3", "Bad recipient address syntax"))
        #expect(parse("RCPT TO:<a@[1.2.3.4]>") == rcpt("a", "[1.2.3.4]"))
        #expect(parse("RCPT TO:<a@[IPv6:2001:db8::1]>") == rcpt("a", "[IPv6:2001:db8::1]"))
    }

    @Test func nonASCIIAddressNeedsSMTPUTF8() {
        #expect(parse("MAIL FROM:<jörg@example.org>") == syntax(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
        #expect(parse("MAIL FROM:<jörg@example.org> SMTPUTF8") == mail("jörg", "example.org", params(utf8: true)))
        #expect(parse("MAIL FROM:<a@bücher.example> SMTPUTF8") == mail("a", "bücher.example", params(utf8: true)))
        #expect(parse("RCPT TO:<jörg@example.org>") == syntax(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
        #expect(parse("RCPT TO:<jörg@example.org>", utf8: false) == syntax(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
        #expect(parse("RCPT TO:<jörg@example.org>", utf8: true) == rcpt("jörg", "example.org"))
        #expect(parse("RCPT TO:<a@bücher.example>", utf8: true) == rcpt("a", "bücher.example"))
    }
}

@Suite struct RcptCommandTests {
    @Test func postmasterWithoutDomain() {
        #expect(parse("RCPT TO:<postmaster>") == .success(.rcpt(Mailbox(localPart: "postmaster", domain: ""), RecipientParameters())))
        #expect(parse("RCPT TO:<Postmaster>") == .success(.rcpt(Mailbox(localPart: "Postmaster", domain: ""), RecipientParameters())))
        #expect(Mailbox(localPart: "postmaster", domain: "").description == "postmaster")
        // Any other bare local part is refused.
        #expect(parse("RCPT TO:<webmaster>") == syntax(501, "5.1.3", "Bad recipient address syntax: address must be local-part@domain"))
    }

    @Test func parametersAreRefused() {
        #expect(parse("RCPT TO:<b@example.org> NOTIFY=NEVER") == syntax(555, "5.5.4", "Unsupported RCPT parameter NOTIFY"))
        #expect(parse("RCPT TO:<b@example.org> =x") == syntax(501, "5.5.4", "Bad RCPT parameter syntax"))
    }

    @Test func missingToKeyword() {
        #expect(parse("RCPT <b@example.org>") == syntax(501, "5.5.4", "Syntax: RCPT TO:<address>"))
        #expect(parse("RCPT FROM:<b@example.org>") == syntax(501, "5.5.4", "Syntax: RCPT TO:<address>"))
    }
}

@Suite struct OtherCommandTests {
    @Test func unknownVerb() {
        #expect(parse("FOO bar") == .failure(.unrecognized("FOO")))
        #expect(parse("get / HTTP/1.0") == .failure(.unrecognized("GET")))
        #expect(parse("") == .failure(.unrecognized("")))
        #expect(CommandError.unrecognized("FOO").reply == SMTPReply(500, "5.5.2", "Syntax error, command unrecognized"))
        #expect(CommandError.unrecognized("FOO").reply.encoded == "500 5.5.2 Syntax error, command unrecognized\r\n")
        // The recorded verb is capped at 32 characters.
        #expect(parse(String(repeating: "X", count: 100)) == .failure(.unrecognized(String(repeating: "X", count: 32))))
    }

    @Test func nulInCommand() {
        let nul = syntax(500, "5.5.2", "Syntax error, NUL in command")
        #expect(parse("HELO a\u{0}b") == nul)
        #expect(parse("MAIL FROM:<a@example.org>\u{0}") == nul)
        #expect(parse("\u{0}") == nul)
        #expect(parse("NOOP \u{0}") == nul)
    }

    @Test func commandsWithoutArguments() {
        #expect(parse("DATA") == .success(.data))
        #expect(parse("DATA ") == .success(.data))
        #expect(parse("DATA x") == syntax(501, "5.5.4", "Syntax: DATA takes no arguments"))
        #expect(parse("RSET now") == syntax(501, "5.5.4", "Syntax: RSET takes no arguments"))
        #expect(parse("QUIT please") == syntax(501, "5.5.4", "Syntax: QUIT takes no arguments"))
        #expect(parse("STARTTLS x") == syntax(501, "5.5.4", "Syntax: STARTTLS takes no arguments"))
        #expect(parse("NOOP anything goes") == .success(.noop))
    }

    @Test func commandsWithFreeArguments() {
        #expect(parse("VRFY postmaster") == .success(.vrfy("postmaster")))
        #expect(parse("VRFY") == syntax(501, "5.5.4", "Syntax: VRFY address"))
        #expect(parse("EXPN staff") == .success(.expn("staff")))
        #expect(parse("EXPN") == syntax(501, "5.5.4", "Syntax: EXPN list"))
        #expect(parse("HELP") == .success(.help("")))
        #expect(parse("HELP mail") == .success(.help("mail")))
        #expect(parse("AUTH PLAIN") == .success(.auth("PLAIN")))
        #expect(parse("BDAT 100 LAST") == .success(.bdat("100 LAST")))
    }

    @Test func verbNames() {
        #expect(SMTPCommand.data.verb == "DATA")
        #expect(SMTPCommand.ehlo("x").verb == "EHLO")
        #expect(SMTPCommand.mail(.null, MailParameters()).verb == "MAIL")
        #expect(SMTPCommand.rcpt(Mailbox(localPart: "a", domain: "b"), RecipientParameters()).verb == "RCPT")
        #expect(SMTPCommand.starttls.verb == "STARTTLS")
    }
}

extension Result where Failure == CommandError {
    var failureReply: SMTPReply? {
        if case .failure(let e) = self { return e.reply }
        return nil
    }
}
