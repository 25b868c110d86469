import Testing
import SMTPProtocol

/// RFC 3461 parameters: taken only when DSN is offered, validated, kept as given.
@Suite struct DSNParameterTests {
    func parse(_ s: String, dsn: Bool = true) -> Result<SMTPCommand, CommandError> {
        CommandParser.parse(s, options: CommandParserOptions(dsn: dsn))
    }

    @Test func withoutDSNTheParametersAreUnsupported() {
        #expect(parse("MAIL FROM:<a@b.example> RET=FULL", dsn: false) == .failure(.syntax(SMTPReply(555, "5.5.4", "Unsupported MAIL parameter RET"))))
        #expect(parse("RCPT TO:<a@b.example> NOTIFY=NEVER", dsn: false) == .failure(.syntax(SMTPReply(555, "5.5.4", "Unsupported RCPT parameter NOTIFY"))))
    }

    @Test func mailParametersAreKept() throws {
        guard case .success(.mail(_, let p)) = parse("MAIL FROM:<a@b.example> ret=hdrs ENVID=QQ+2B314159") else { Issue.record("not parsed"); return }
        #expect(p.ret == "HDRS")
        #expect(p.envid == "QQ+2B314159")
        #expect(p.needsESMTP)
    }

    @Test func recipientParametersAreKept() {
        guard case .success(.rcpt(let m, let p)) = parse("RCPT TO:<c@d.example> NOTIFY=success,delay ORCPT=rfc822;c+40d.example") else {
            Issue.record("not parsed"); return
        }
        #expect(m.description == "c@d.example")
        #expect(p.notify == "SUCCESS,DELAY")
        #expect(p.orcpt == "rfc822;c+40d.example")
        #expect(p.wire == " NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c+40d.example")
    }

    @Test(arguments: [
        "RCPT TO:<c@d.example> NOTIFY=NEVER,SUCCESS", "RCPT TO:<c@d.example> NOTIFY=SUCCESS,SUCCESS", "RCPT TO:<c@d.example> NOTIFY=",
        "RCPT TO:<c@d.example> NOTIFY=SOMETIMES", "RCPT TO:<c@d.example> ORCPT=c@d.example", "RCPT TO:<c@d.example> ORCPT=;x",
        "RCPT TO:<c@d.example> ORCPT=rfc822;a+4", "RCPT TO:<c@d.example> ORCPT=rfc822;a+zz", "RCPT TO:<c@d.example> NOTIFY=NEVER NOTIFY=NEVER",
        "MAIL FROM:<a@b.example> RET=BODY", "MAIL FROM:<a@b.example> ENVID=a+2", "MAIL FROM:<a@b.example> RET=FULL RET=HDRS",
    ])
    func malformedParametersAre501(_ line: String) {
        guard case .failure(.syntax(let r)) = parse(line) else { Issue.record("\(line) was taken"); return }
        #expect(r.code == 501, "\(line): \(r)")
    }

    @Test func anXtextIsBounded() {
        #expect(DSNSyntax.isXtext(Array(repeating: UInt8(ascii: "a"), count: 100), maxOctets: 100))
        #expect(!DSNSyntax.isXtext(Array(repeating: UInt8(ascii: "a"), count: 101), maxOctets: 100))
        #expect(!DSNSyntax.isORCPT(Substring("rfc822;" + String(repeating: "a", count: 500))))
    }
}
