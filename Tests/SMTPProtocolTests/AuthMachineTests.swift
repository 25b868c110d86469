import Foundation
import Testing
import SMTPProtocol

/// SMTP AUTH (RFC 4954) in the state machine: where it is offered, PLAIN and LOGIN with and
/// without an initial response, cancel and syntax errors, the per-session failure limit,
/// relay and verifyIdentity for an authenticated user.
@Suite struct AuthMachineTests {
    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
    static let alice = SMTPAuthenticatedUser(name: "alice")

    /// A session under TLS on a listener with `mode`; `check` answers every password check.
    static func session(_ mode: SMTPAuthMode = .required, tls: Bool = true, trusted: Bool = false,
                        check: SMTPCredentialCheck = .accepted(alice), _ configure: (inout SMTPServerConfiguration) -> Void = { _ in }) -> MachineHarness {
        var h = MachineHarness { c in
            c.authMode = mode
            c.clientTrusted = trusted
            configure(&c)
        }
        h.credentialCheck = check
        if tls { h.feed(.tlsEstablished(SMTPTLSInfo(version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256"))) }
        h.connect()
        return h
    }

    @Test func authIsAnnouncedAsJamesSays() {
        func announced(_ mode: SMTPAuthMode, tls: Bool = true, trusted: Bool = false, plaintext: Bool = false) -> Bool {
            var h = Self.session(mode, tls: tls, trusted: trusted) { $0.authAllowPlaintext = plaintext }
            return h.send("EHLO c.example.net").first?.lines.contains("AUTH PLAIN LOGIN") == true
        }
        #expect(!announced(.off))
        #expect(announced(.required))
        #expect(!announced(.required, trusted: true), "true: only to clients outside authorizedAddresses")
        #expect(announced(.announce, trusted: true))
        #expect(!announced(.required, tls: false), "not before TLS")
        #expect(announced(.required, tls: false, plaintext: true))
    }

    @Test func plainWithAnInitialResponseAuthenticates() {
        var h = Self.session()
        h.send("EHLO c.example.net")
        #expect(h.send("AUTH PLAIN \(Self.b64("\0alice\0secret"))").map(\.summary) == ["235 2.7.0 Authentication successful"])
        #expect(h.checked == [SMTPCredentials(mechanism: .plain, user: "alice", password: "secret")])
        #expect(h.machine.authUser == Self.alice)
        #expect(h.send("EHLO c.example.net").first?.lines.contains("AUTH PLAIN LOGIN") == false)
        #expect(h.send("AUTH PLAIN \(Self.b64("\0alice\0secret"))").map(\.summary) == ["503 5.5.1 Already authenticated"])
        #expect(h.decisions.contains { $0.check == "auth" && $0.result == "success" && $0.reason == "PLAIN user=alice" })
    }

    @Test func plainAndLoginWithChallenges() {
        var h = Self.session()
        h.send("EHLO c.example.net")
        #expect(h.send("AUTH PLAIN").map(\.summary) == ["334 "])
        #expect(h.send(Self.b64("alice\0alice\0pw")).map(\.code) == [235])
        var l = Self.session()
        l.send("EHLO c.example.net")
        #expect(l.send("AUTH LOGIN").map(\.summary) == ["334 VXNlcm5hbWU6"])
        #expect(l.send(Self.b64("alice")).map(\.summary) == ["334 UGFzc3dvcmQ6"])
        #expect(l.send(Self.b64("pw")).map(\.code) == [235])
        #expect(l.checked == [SMTPCredentials(mechanism: .login, user: "alice", password: "pw")])
        var ir = Self.session()
        ir.send("EHLO c.example.net")
        #expect(ir.send("AUTH login \(Self.b64("alice"))").map(\.summary) == ["334 UGFzc3dvcmQ6"])
    }

    @Test func refusalsHaveTheirOwnCodes() {
        var h = Self.session()
        h.send("EHLO c.example.net")
        #expect(h.send("AUTH PLAIN !!!!").map(\.summary) == ["501 5.5.2 Cannot decode the response"])
        #expect(h.send("AUTH PLAIN \(Self.b64("bob\0alice\0pw"))").map(\.code) == [501], "acting as another user is not offered")
        #expect(h.send("AUTH CRAM-MD5").map(\.summary) == ["504 5.5.4 Unrecognized authentication type"])
        var c = Self.session()
        c.send("EHLO c.example.net", "AUTH LOGIN")
        #expect(c.send("*").map(\.summary) == ["501 5.0.0 Authentication cancelled"])
        #expect(c.checked.isEmpty)
        var t = Self.session()
        t.send("EHLO c.example.net", "MAIL FROM:<alice@example.org>")
        #expect(t.send("AUTH PLAIN \(Self.b64("\0alice\0pw"))").map(\.summary) == ["503 5.5.1 AUTH not permitted during a mail transaction"])
        var p = Self.session(tls: false)
        p.send("EHLO c.example.net")
        #expect(p.send("AUTH PLAIN \(Self.b64("\0alice\0pw"))").map(\.summary) == ["538 5.7.11 Encryption required for requested authentication mechanism"])
        var off = Self.session(.off)
        off.send("EHLO c.example.net")
        #expect(off.send("AUTH PLAIN").map(\.summary) == ["502 5.5.1 AUTH not available"])
        var helo = Self.session()
        helo.send("HELO c.example.net")
        #expect(helo.send("AUTH PLAIN").map(\.summary) == ["503 5.5.1 Send EHLO first"])
    }

    @Test func wrongPasswordsEndTheSessionAndLockoutIs454() {
        var h = Self.session(check: .rejected) { $0.maxAuthFailures = 3; $0.maxErrors = 10 }
        h.send("EHLO c.example.net")
        let wrong = "AUTH PLAIN \(Self.b64("\0alice\0wrong"))"
        #expect(h.send(wrong).map(\.summary) == ["535 5.7.8 Authentication credentials invalid"])
        #expect(h.send(wrong).map(\.code) == [535])
        #expect(h.send(wrong).map(\.summary) == ["535 5.7.8 Authentication credentials invalid", "421 4.7.0 Too many authentication failures, closing connection"])
        #expect(h.closed == .tooManyErrors)
        #expect(h.failures == 3, "each failure is told for fail2ban")
        // A locked-out client that keeps trying is closed like one that keeps guessing.
        var l = Self.session(check: .lockedOut) { $0.maxAuthFailures = 2; $0.maxErrors = 10 }
        l.send("EHLO c.example.net")
        let locked = "454 4.7.0 Too many authentication failures from your address, try again later"
        #expect(l.send(wrong).map(\.summary) == [locked])
        #expect(l.send(wrong).map(\.summary) == [locked, "421 4.7.0 Too many authentication failures, closing connection"])
        #expect(l.closed == .tooManyErrors)
    }

    @Test func anAuthenticatedUserRelaysAndSendsOnlyAsItself() {
        var h = Self.session()
        h.send("EHLO c.example.net")
        #expect(h.codes("MAIL FROM:<x@example.net>", "RCPT TO:<bob@remote.example>") == [250, 550], "no relay before AUTH")
        h.send("RSET")
        h.send("AUTH PLAIN \(Self.b64("\0alice\0pw"))")
        #expect(h.send("MAIL FROM:<mallory@example.org>").map(\.summary) == ["550 5.7.1 Sender <mallory@example.org> is not owned by user alice"])
        #expect(h.codes("MAIL FROM:<Alice@Example.org>", "RCPT TO:<bob@remote.example>") == [250, 250])
        #expect(h.decisions.contains { $0.check == "relay" && $0.result == "authenticated" })
        var n = Self.session { $0.verifyIdentity = false }
        n.send("EHLO c.example.net", "AUTH PLAIN \(Self.b64("\0alice\0pw"))")
        #expect(n.codes("MAIL FROM:<anyone@example.net>") == [250])
        var listed = Self.session(check: .accepted(SMTPAuthenticatedUser(name: "alice", addresses: ["a@example.net"])))
        listed.send("EHLO c.example.net", "AUTH PLAIN \(Self.b64("\0alice\0pw"))")
        #expect(listed.codes("MAIL FROM:<alice@example.org>", "RSET", "MAIL FROM:<a@example.net>", "RSET", "MAIL FROM:<>") == [550, 250, 250, 250, 250])
    }

    @Test func starttlsForgetsAPlaintextAuth() {
        var h = Self.session(tls: false) { $0.authAllowPlaintext = true; $0.offersSTARTTLS = true }
        h.send("EHLO c.example.net", "AUTH PLAIN \(Self.b64("\0alice\0pw"))", "STARTTLS")
        h.feed(.tlsEstablished(SMTPTLSInfo(version: "TLSv1.3", cipher: "x")))
        #expect(h.machine.authUser == nil)
    }
}
