import Foundation
import Testing
import DNSResolver
import NIOCore
import SMTPProtocol
@testable import Gateway

/// DKIM end to end: dkimpy signs, the fixture server publishes the key, the gateway verifies
/// while DATA streams in.
@Suite(.serialized) struct DKIMGatewayTests {
    static let tool = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("MailAuthTests/dkimtool.py").path

    static let message = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: signed\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <e2e@example.com>\r\n\r\nHello Bob.\r\n.leading dot line\r\n"

    struct World {
        let dir: String
        let dns: DNSFixtureServer
        let down: RecordingDownstream
        let gw: TestGateway
        func stop() async { await gw.stop(); down.stop(); await dns.stop() }
    }

    static func python(_ args: [String], input: Data? = nil) async throws -> String {
        try await withCheckedThrowingContinuation { cont in
            Thread.detachNewThread {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
                p.arguments = [tool] + args
                let out = Pipe(), inp = Pipe()
                p.standardOutput = out
                p.standardInput = inp
                do { try p.run() } catch { cont.resume(throwing: error); return }
                if let d = input { inp.fileHandleForWriting.write(d) }
                try? inp.fileHandleForWriting.close()
                let data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                cont.resume(returning: String(decoding: data, as: UTF8.self))
            }
        }
    }

    static func start() async throws -> World {
        let dir = NSTemporaryDirectory() + "mg-gwdkim-" + UUID().uuidString
        _ = try await python(["keys", dir])
        let key = try String(contentsOfFile: dir + "/rsa2048.txt", encoding: .utf8)
        var chunks: [String] = []
        var rest = Substring(key)
        while !rest.isEmpty { chunks.append("\"\(rest.prefix(200))\""); rest = rest.dropFirst(200) }
        let dns = try DNSFixtureServer(fixtures: "rsa._domainkey.example.com. 300 IN TXT \(chunks.joined(separator: " "))\nbroken._domainkey.example.com. SERVFAIL\n")
        try await dns.start()
        // The shipped rules, with example.com on their list of domains that must sign.
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../rules/dkim.rules").standardized.path
        try FileManager.default.createDirectory(atPath: dir + "/lists", withIntermediateDirectories: true)
        try "example.com\n".write(toFile: dir + "/lists/dkim-required.txt", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: shipped, toPath: dir + "/r.rules")
        try "name: dkim\nchecks:\n  dkim: {}\nrules: [r.rules]\n".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) {
            $0.policy = dir + "/p.yaml"
            $0.dns.servers = [dns.address]
            $0.dns.timeout = 1.5
        }
        return World(dir: dir, dns: dns, down: down, gw: gw)
    }

    static func sign(_ w: World, _ message: String = message) async throws -> String {
        let args: [String: Any] = ["message_b64": Data(message.utf8).base64EncodedString(), "key": w.dir + "/rsa2048.pem",
                                   "selector": "rsa", "domain": "example.com", "canon": "relaxed/relaxed"]
        let out = try await python(["sign"], input: try JSONSerialization.data(withJSONObject: args))
        return String(decoding: Data(base64Encoded: out)!, as: UTF8.self)
    }

    @Test func aSignedMessageIsForwardedWithDkimPassAndAChangedOneGetsDkimFail() async throws {
        let w = try await Self.start()
        let signed = try await Self.sign(w)
        let b = try #require(signed.range(of: "b=")).upperBound
        let headerB = String(signed[b...].filter { !$0.isWhitespace && $0 != "\r" && $0 != "\n" }.prefix(8))
        // A forged Authentication-Results in our name rides along: it must go.
        let forged = "Authentication-Results: gw.test; dkim=pass header.d=paypal.com\r\n" + signed
        let r = try await Client.smtplib(port: w.gw.port, from: "alice@example.com", to: ["bob@example.org"], data: forged)
        #expect(r["ok"] as? Bool == true, "\(r)")
        let text = String(decoding: try #require(w.down.messages.first).data, as: UTF8.self)
        #expect(text.contains("\r\nAuthentication-Results: gw.test; dkim=pass header.d=example.com header.s=rsa header.i=@example.com header.a=rsa-sha256 header.b=\(headerB)\r\nDKIM-Signature: "), "\(text)")
        #expect(!text.contains("paypal.com"))
        #expect(text.hasSuffix("Hello Bob.\r\n.leading dot line\r\n"))
        // One body byte changed, from a sender that does not require signatures: forwarded, dkim=fail.
        let changed = signed.replacingOccurrences(of: "Hello Bob.", with: "Hello Bob!")
        let r2 = try await Client.smtplib(port: w.gw.port, from: "carol@example.net", to: ["bob@example.org"], data: changed)
        #expect(r2["ok"] as? Bool == true, "\(r2)")
        let text2 = String(decoding: try #require(w.down.messages.last).data, as: UTF8.self)
        #expect(text2.contains("\r\nAuthentication-Results: gw.test; dkim=fail reason=\"body hash did not verify\" header.d=example.com header.s=rsa"), "\(text2)")
        let records = try await w.gw.records(waitingFor: "session.close", count: 2)
        #expect(records.contains { $0["check"] as? String == "headers" && $0["result"] as? String == "removed"
            && $0["reason"] as? String == "removed 1 Authentication-Results field claiming to be from gw.test" })
        await w.stop()
    }

    @Test func aDomainThatMustSignIsRefusedWithoutAValidSignature() async throws {
        let w = try await Self.start()
        let changed = try await Self.sign(w).replacingOccurrences(of: "Hello Bob.", with: "Hello Bob!")
        let d = try await Client.raw(port: w.gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n", 4),
            (changed + ".\r\n", 1),
        ])
        #expect(d.replies.last == ["550 5.7.20 Message refused: example.com signs all its mail, and this message has no valid DKIM signature from it"], "\(d)")
        #expect(w.down.messages.isEmpty)
        let records = try await w.gw.records(waitingFor: "session.close")
        let rule = try #require(records.first { $0["rule"] as? String == "dkim-required" })
        #expect(rule["action"] as? String == "reject")
        #expect(rule["stage"] as? String == "message")
        let check = try #require(records.first { $0["check"] as? String == "dkim" })
        #expect(check["result"] as? String == "fail")
        #expect((check["reason"] as? String)?.hasPrefix("d=example.com s=rsa rsa-sha256/2048: fail (body hash did not verify)") == true, "\(check)")
        await w.stop()
    }

    @Test func authenticationResultsInOurNameAreRecognisedWithVersionsAndComments() {
        // Whole fields, as the header assembler hands them over (lines joined by CRLF).
        let ours = ["Authentication-Results: gw.test; dkim=pass", "authentication-results:GW.TEST ; spf=pass",
                    "Authentication-Results: gw.test 1; dkim=pass", "Authentication-Results: gw.test (forged) 1 (x\\)y); none",
                    "Authentication-Results: gw.test", "Authentication-Results: gw.test 1 2; x",
                    // Found by the hardening issue: each of these got through before.
                    "Authentication-Results:\r\n\tgw.test; dkim=pass header.d=bank.example",
                    "Authentication-Results: (c) gw.test; dkim=pass", "Authentication-Results : gw.test; dkim=pass",
                    "Authentication-Results: \"gw.test\"; dkim=pass", "Authentication-Results: gw.test.; spf=pass",
                    "Authentication-Results: (a (nested) comment)\r\n gw.test\r\n ; dkim=pass",
                    // Found in review: folded before the colon.
                    "Authentication-Results\r\n : gw.test; dkim=pass header.d=bank.example"]
        let others = ["Authentication-Results: gw.test.evil; dkim=pass", "Authentication-Results: gw.test1; dkim=pass",
                      "Authentication-Results: other.example; dkim=pass", "Authentication-Results-X: gw.test; x",
                      "Authentication-Results: gw.tes", "Authentication-Results: other.example; x=\"gw.test;\"",
                      "X-Authentication-Results: gw.test; dkim=pass"]
        for l in ours { #expect(AuthenticationResults.claims(Array(l.utf8), authservID: "gw.test"), "\(l)") }
        for l in others { #expect(!AuthenticationResults.claims(Array(l.utf8), authservID: "gw.test"), "\(l)") }
        // Any listener's name counts, on every listener.
        #expect(AuthenticationResults.claims(Array("Authentication-Results: submit.test; dkim=pass".utf8), authservIDs: ["gw.test", "submit.test"]))
    }

    @Test func aKeyThatCannotBeFetchedIsARetryNotARefusal() async throws {
        let w = try await Self.start()
        // The selector's key lookup gets SERVFAIL: temperror, so 451, never 550.
        let signed = try await Self.sign(w).replacingOccurrences(of: "s=rsa;", with: "s=broken;")
        let d = try await Client.raw(port: w.gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n", 4),
            (signed + ".\r\n", 1),
        ])
        #expect(d.replies.last == ["451 4.7.5 Message deferred: the DKIM key of example.com could not be fetched; try again later"], "\(d)")
        #expect(w.down.messages.isEmpty)
        let records = try await w.gw.records(waitingFor: "session.close")
        #expect(records.first { $0["check"] as? String == "dkim" }?["result"] as? String == "temperror")
        #expect(records.first { $0["rule"] as? String == "dkim-required-temperror" }?["action"] as? String == "tempfail")
        #expect(!records.contains { $0["rule"] as? String == "dkim-required" })
        await w.stop()
    }

    @Test func checkDkimPrintsEachSignature() async throws {
        let w = try await Self.start()
        let signed = try await Self.sign(w)
        let f = w.dir + "/m.eml"
        try signed.write(toFile: f, atomically: true, encoding: .utf8)
        let (st, out) = try await runProgram(CLITests.binary, ["check", "dkim", f, "--dns", w.dns.address])
        #expect(st == 0)
        #expect(out.contains("d=example.com s=rsa a=rsa-sha256 bits=2048 i=@example.com: pass (signature verified)\n"), "\(out)")
        try signed.replacingOccurrences(of: "Hello Bob.", with: "Hello Bob!").write(toFile: f, atomically: true, encoding: .utf8)
        let (st2, out2) = try await runProgram(CLITests.binary, ["check", "dkim", f, "--dns", w.dns.address])
        #expect(st2 == 1)
        #expect(out2.contains(": fail (body hash did not verify)\n"), "\(out2)")
        await w.stop()
    }
}
