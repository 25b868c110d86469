import Testing
import Checks
import PolicyEngine
import SMTPProtocol

func context(client: String = "192.0.2.1", authorized: Bool = false, maxSize: Int = 1000) -> CheckContext {
    CheckContext(sessionID: "s1", listener: "smtp", clientIP: IPAddress(client)!, clientPort: 40000,
                 clientAuthorized: authorized, maxMessageSize: maxSize)
}

@Suite struct SizeCheckTests {
    let check = SizeCheck()
    let tooBig = SMTPReply(552, "5.3.4", "Message size exceeds fixed maximum message size")

    func mailContext(declared: Int?, max: Int = 1000) -> CheckContext {
        var c = context(maxSize: max)
        var p = MailParameters()
        p.size = declared
        c.mailParameters = p
        return c
    }

    @Test func identity() {
        #expect(check.name == "size")
        #expect(check.stages == [.mail, .message])
        #expect(SizeCheck.tooBig == tooBig)
        #expect(SizeCheck.tooBig.encoded == "552 5.3.4 Message size exceeds fixed maximum message size\r\n")
    }

    @Test func declaredSizeOverMaxIsRejected() async {
        let r = await check.evaluate(stage: .mail, context: mailContext(declared: 1001))
        #expect(r.action == .reject(tooBig))
        #expect(r.result == "oversize")
        #expect(r.reason == "declared SIZE=1001 exceeds maxmessagesize 1000")
        #expect(r.score == 0)
    }

    @Test func declaredSizeUpToMaxPasses() async {
        let atMax = await check.evaluate(stage: .mail, context: mailContext(declared: 1000))
        #expect(atMax.action == .continue)
        #expect(atMax.result == "pass")
        #expect(atMax.reason == "declared SIZE=1000")
        let under = await check.evaluate(stage: .mail, context: mailContext(declared: 10))
        #expect(under.action == .continue)
        #expect(under.result == "pass")
    }

    @Test func undeclaredSizePasses() async {
        let none = await check.evaluate(stage: .mail, context: mailContext(declared: nil))
        #expect(none.action == .continue)
        #expect(none.result == "undeclared")
        let noParams = await check.evaluate(stage: .mail, context: context())
        #expect(noParams.action == .continue)
        #expect(noParams.result == "undeclared")
    }

    @Test func unlimited() async {
        let r = await check.evaluate(stage: .mail, context: mailContext(declared: Int.max, max: 0))
        #expect(r.action == .continue)
        #expect(r.result == "unlimited")
        var c = context(maxSize: 0)
        c.messageSize = 50_000_000
        c.messageTruncated = true
        let m = await check.evaluate(stage: .message, context: c)
        #expect(m.action == .continue)
        #expect(m.result == "unlimited")
    }

    @Test func truncatedMessageIsRejected() async {
        var c = context(maxSize: 1000)
        c.messageSize = 1000
        c.messageTruncated = true
        let r = await check.evaluate(stage: .message, context: c)
        #expect(r.action == .reject(tooBig))
        #expect(r.action.reply?.code == 552)
        #expect(r.action.reply?.enhanced == "5.3.4")
        #expect(r.result == "oversize")
        #expect(r.reason == "message of 1000+ octets exceeds maxmessagesize 1000")
    }

    @Test func messageSizeOverMaxIsRejected() async {
        var c = context(maxSize: 1000)
        c.messageSize = 1001
        let r = await check.evaluate(stage: .message, context: c)
        #expect(r.action == .reject(tooBig))
        #expect(r.reason == "message of 1001 octets exceeds maxmessagesize 1000")
    }

    @Test func messageWithinMaxPasses() async {
        var c = context(maxSize: 1000)
        c.messageSize = 1000
        let r = await check.evaluate(stage: .message, context: c)
        #expect(r.action == .continue)
        #expect(r.result == "pass")
    }

    @Test func otherStagesAreSkipped() async {
        let r = await check.evaluate(stage: .rcpt, context: mailContext(declared: 5000))
        #expect(r.action == .continue)
        #expect(r.result == "skipped")
    }
}

@Suite struct HeloCheckTests {
    func run(_ helo: String?, client: String = "192.0.2.1", authorized: Bool = false,
             _ configure: (inout HeloCheck.Options) -> Void = { _ in }) async -> CheckResult {
        var o = HeloCheck.Options()
        configure(&o)
        var c = context(client: client, authorized: authorized)
        c.heloVerb = "EHLO"
        c.helo = helo
        return await HeloCheck(options: o).evaluate(stage: .helo, context: c)
    }

    @Test func identityAndDefaults() {
        let h = HeloCheck()
        #expect(h.name == "helo")
        #expect(h.stages == [.helo])
        #expect(!h.options.literalMustMatchClient)
        #expect(!h.options.checkAuthorized)
        #expect(h.options.reject)
        #expect(h.options.score == 1)
    }

    @Test func fqdnPasses() async {
        let r = await run("mail.example.org")
        #expect(r.action == .continue)
        #expect(r.result == "pass")
        #expect(r.score == 0)
    }

    @Test func noHeloYet() async {
        let r = await run(nil)
        #expect(r.action == .continue)
        #expect(r.result == "none")
    }

    @Test func localhostNeedsFQDN() async {
        let r = await run("localhost")
        #expect(r.action == .reject(SMTPReply(504, "5.5.2", "Helo command rejected: need fully-qualified hostname")))
        #expect(r.result == "invalid")
        #expect(r.reason == "not a fully qualified domain name")
    }

    @Test func invalidNames() async {
        let bare = await run("192.0.2.1")
        #expect(bare.action == .reject(SMTPReply(501, "5.5.2", "Helo command rejected: Invalid name")))
        #expect(bare.reason == "bare IP address; an address literal needs brackets")
        let syntax = await run("bad_name.example")
        #expect(syntax.action == .reject(SMTPReply(501, "5.5.2", "Helo command rejected: Invalid name")))
        #expect(syntax.reason == "not a valid domain name")
        let numeric = await run("host.123")
        #expect(numeric.action == .reject(SMTPReply(501, "5.5.2", "Helo command rejected: Invalid name")))
        #expect(numeric.reason == "numeric top-level label")
        let literal = await run("[1.2.3]")
        #expect(literal.action == .reject(SMTPReply(501, "5.5.2", "Helo command rejected: Invalid name")))
        #expect(literal.reason == "malformed address literal")
    }

    @Test func addressLiteralOfTheClient() async {
        let r = await run("[1.2.3.4]", client: "1.2.3.4") { $0.literalMustMatchClient = true }
        #expect(r.action == .continue)
        #expect(r.result == "pass")
        // A client on a dual-stack socket (mapped address) matches its IPv4 literal.
        let mapped = await run("[1.2.3.4]", client: "::ffff:1.2.3.4") { $0.literalMustMatchClient = true }
        #expect(mapped.action == .continue)
        let v6 = await run("[IPv6:2001:db8::7]", client: "2001:db8::7") { $0.literalMustMatchClient = true }
        #expect(v6.action == .continue)
    }

    @Test func addressLiteralOfAnotherHost() async {
        let r = await run("[1.2.3.4]", client: "5.6.7.8") { $0.literalMustMatchClient = true }
        #expect(r.action == .reject(SMTPReply(550, "5.7.1", "Helo command rejected: address literal does not match your address")))
        #expect(r.result == "invalid")
        #expect(r.reason == "address literal 1.2.3.4 is not the client address 5.6.7.8")
        // Without literalMustMatchClient any well-formed literal passes.
        let loose = await run("[1.2.3.4]", client: "5.6.7.8")
        #expect(loose.action == .continue)
        #expect(loose.result == "pass")
    }

    @Test func authorizedClientIsSkipped() async {
        let r = await run("localhost", authorized: true)
        #expect(r.action == .continue)
        #expect(r.result == "skipped")
        #expect(r.reason == "client in authorizedAddresses")
        let checked = await run("localhost", authorized: true) { $0.checkAuthorized = true }
        #expect(checked.action == .reject(SMTPReply(504, "5.5.2", "Helo command rejected: need fully-qualified hostname")))
    }

    @Test func scoreInsteadOfReject() async {
        let r = await run("localhost") { $0.reject = false; $0.score = 2.5 }
        #expect(r.action == .continue)
        #expect(r.result == "invalid")
        #expect(r.reason == "not a fully qualified domain name")
        #expect(r.score == 2.5)
        let literal = await run("[1.2.3.4]", client: "5.6.7.8") { $0.reject = false; $0.literalMustMatchClient = true }
        #expect(literal.action == .continue)
        #expect(literal.score == 1)
        // A good name adds no score.
        let good = await run("mail.example.org") { $0.reject = false; $0.score = 2.5 }
        #expect(good.score == 0)
    }
}
