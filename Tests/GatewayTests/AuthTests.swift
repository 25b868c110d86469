import Foundation
import Testing
@testable import Gateway
import SMTPProtocol

/// SMTP AUTH through real sockets: swaks with STARTTLS and implicit TLS, a passwd-file made
/// by `PasswdFile`/`PasswordHash` (libxcrypt), brute force locked out across connections
/// with lines the shipped fail2ban filter matches, and no open relay for any address form.
@Suite(.serialized) struct AuthTests {
    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
    /// The raw client sends latin-1: this puts `s`'s UTF-8 octets on the wire.
    static func utf8(_ s: String) -> String { String(String.UnicodeScalarView(s.utf8.map { Unicode.Scalar($0) })) }

    /// A gateway with users alice (yescrypt) and bob (SHA512-CRYPT, may send as b@example.net),
    /// AUTH required, clients outside authorizedAddresses.
    static func gateway(_ down: RecordingDownstream, tls: ListenerTLSConfig.Mode = .starttls, plaintext: Bool = false,
                        lines: LineSink? = nil,
                        configure: @escaping (inout GatewayConfig) -> Void = { _ in }) async throws -> (TestGateway, TestCertificates) {
        let certs = try await TestCertificates()
        let mx = try await certs.issue("mx.example.org")
        var users = PasswdFile()
        try users.set(user: "alice", hashed: try PasswordHash.make("alice-secret"))
        try users.set(user: "bob", hashed: try PasswordHash.make("bob-secret", scheme: "SHA512-CRYPT"), addresses: ["b@example.net"])
        let passwd = certs.dir + "/passwd"
        try users.write(to: passwd)
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], authLines: lines) { c in
            c.listeners[0].authorizedAddresses = []
            c.listeners[0].authRequired = .required
            c.listeners[0].authAllowPlaintext = plaintext
            c.listeners[0].tls.mode = tls
            c.listeners[0].tls.certificates = [ListenerTLSConfig.Certificate(certificate: mx.certificate, key: mx.key)]
            c.auth.passwdFile = passwd
            c.auth.failureDelay = 0
            configure(&c)
        }
        return (gw, certs)
    }

    static func swaks(_ args: [String]) async throws -> (status: Int32, output: String) {
        try await runProgram("/usr/bin/swaks", ["--server", "127.0.0.1", "--helo", "client.example.net", "--timeout", "20",
                                                "--h-Subject", "auth test", "--body", "hello"] + args)
    }

    @Test func swaksRelaysAsAUserOverSTARTTLSAndImplicitTLSAndIsRefusedWithoutAUTH() async throws {
        let down = try await RecordingDownstream.start()
        let (gw, _) = try await Self.gateway(down)
        let port = "\(gw.port)"
        let ok = try await Self.swaks(["--port", port, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "alice-secret",
                                       "--from", "alice@example.org", "--to", "friend@remote.example"])
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("250-AUTH PLAIN LOGIN"), "\(ok.output)")
        #expect(down.messages.map(\.rcpts) == [["friend@remote.example"]])
        let text = String(decoding: down.messages.first?.data ?? [], as: UTF8.self)
        #expect(text.contains(" with ESMTPSA id "), "\(text)")
        let login = try await Self.swaks(["--port", port, "--tls", "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", "bob-secret",
                                          "--from", "b@example.net", "--to", "friend@remote.example"])
        #expect(login.status == 0, "\(login.output)")
        let refused = try await Self.swaks(["--port", port, "--tls", "--from", "alice@example.org", "--to", "friend@remote.example"])
        #expect(refused.status != 0)
        #expect(refused.output.contains("550 5.7.1 <friend@remote.example>: Relay access denied"), "\(refused.output)")
        let wrong = try await Self.swaks(["--port", port, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "nope",
                                          "--from", "alice@example.org", "--to", "friend@remote.example"])
        #expect(wrong.output.contains("535 5.7.8 Authentication credentials invalid"), "\(wrong.output)")
        let plain = try await Self.swaks(["--port", port, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "alice-secret",
                                          "--from", "alice@example.org", "--to", "friend@remote.example"])
        #expect(plain.status != 0, "no AUTH before TLS: \(plain.output)")
        #expect(down.messages.count == 2)
        let records = try await gw.records()
        #expect(records.contains { $0["check"] as? String == "auth" && $0["result"] as? String == "success" && $0["reason"] as? String == "LOGIN user=bob" })
        #expect(records.contains { $0["check"] as? String == "relay" && $0["result"] as? String == "authenticated" })
        await gw.stop()
        let (implicit, _) = try await Self.gateway(down, tls: .implicit)
        let tlsc = try await Self.swaks(["--port", "\(implicit.port)", "--tlsc", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "alice-secret",
                                         "--from", "alice@example.org", "--to", "friend@remote.example"])
        #expect(tlsc.status == 0, "\(tlsc.output)")
        #expect(down.messages.count == 3)
        await implicit.stop()
        down.stop()
    }

    /// 20 wrong passwords from one address, over several connections (3 a session, then
    /// 421), lock that address out: its next AUTH, even a right one, gets 454. Every failure
    /// is one log record and one line the shipped fail2ban filter matches.
    @Test func bruteForceIsLockedOutAcrossConnectionsAndFail2banSeesIt() async throws {
        let down = try await RecordingDownstream.start()
        let lines = LineSink()
        let (gw, _) = try await Self.gateway(down, plaintext: true, lines: lines)
        let wrong = "AUTH PLAIN \(Self.b64("\0alice\0guess"))\r\n"
        var codes: [String] = []
        for _ in 0..<7 {
            let d = try await Client.raw(port: gw.port, [("EHLO client.example.net\r\n", 1), (wrong, 1), (wrong, 1), (wrong, 1)])
            codes += d.replies.dropFirst().flatMap { $0 }.map { String($0.prefix(3)) }
        }
        #expect(codes.filter { $0 == "535" }.count == 20, "\(codes)")
        #expect(codes.last == "454", "\(codes)")
        let right = try await Client.raw(port: gw.port, [("EHLO client.example.net\r\n", 1), ("AUTH PLAIN \(Self.b64("\0alice\0alice-secret"))\r\n", 1)])
        #expect(right.replies[1] == ["454 4.7.0 Too many authentication failures from your address, try again later"])
        let records = try await gw.records()
        #expect(records.filter { $0["check"] as? String == "auth" && $0["result"] as? String == "failed" }.count == 20)
        // The shipped filter, with fail2ban's <HOST> as an address group.
        let conf = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../contrib/fail2ban/filter.d/mailgate.conf").standardized.path, encoding: .utf8)
        let failregex = try #require(conf.split(separator: "\n").first { $0.hasPrefix("failregex = ") }).dropFirst("failregex = ".count)
        let regex = try NSRegularExpression(pattern: failregex.replacingOccurrences(of: "<HOST>", with: "(?<host>[0-9A-Fa-f:.]+)"))
        let got = lines.lines
        #expect(got.count == 22, "20 failures and 2 locked-out attempts: \(got)")
        for l in got {
            let m = regex.firstMatch(in: l, range: NSRange(l.startIndex..., in: l))
            #expect(m.flatMap { Range($0.range(withName: "host"), in: l) }.map { String(l[$0]) } == "127.0.0.1", "\(l)")
        }
        // A user name cannot make the line name another host.
        #expect(Session.printable("x\" client=192.0.2.9\nfoo") == "x? client=192.0.2.9?foo")
        await gw.stop()
        down.stop()
    }

    /// No address form relays for a client that is neither authorised nor authenticated;
    /// the real remote ones relay once it has authenticated.
    @Test func noAddressFormRelaysWithoutAUTH() async throws {
        let down = try await RecordingDownstream.start()
        let (gw, _) = try await Self.gateway(down, plaintext: true) { c in
            c.domains = ["example.org", "bücher.example"]
            c.listeners[0].maxUnrecognizedCommands = 50
        }
        let remote = ["bob@remote.example", "bob@REMOTE.Example", "bob@remote.example.", "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]",
                      "user@sub.example.org"]
        let routed = ["user%remote.example@example.org", "\"user@remote.example\"@example.org", "remote.example!user@example.org"]
        let malformed = ["@example.org:user@remote.example", "user@remote.example@example.org"]
        var steps: [(String?, Int)] = [("EHLO client.example.net\r\n", 1), ("MAIL FROM:<x@example.net> SMTPUTF8\r\n", 1)]
        for to in remote + routed + malformed { steps.append(("RCPT TO:<\(to)>\r\n", 1)) }
        steps += [("RCPT TO:<user@xn--bcher-kva.example>\r\n", 1), ("RCPT TO:<\(Self.utf8("user@bücher.example"))>\r\n", 1), ("RCPT TO:<User@Example.ORG>\r\n", 1)]
        let d = try await Client.raw(port: gw.port, steps)
        let replies = d.replies.dropFirst(2).map { $0.first ?? "" }
        for (to, r) in zip(remote + routed, replies) {
            #expect(r.hasPrefix("550 5.7.1 "), "\(to): \(r)")
        }
        for (to, r) in zip(malformed, replies.dropFirst(remote.count + routed.count)) {
            #expect(r.hasPrefix("5"), "\(to) is refused: \(r)")
        }
        #expect(replies.suffix(3).allSatisfy { $0.hasPrefix("250 2.1.5") }, "local in every form: \(replies.suffix(3))")
        // Authenticated, the real remote addresses relay.
        var auth: [(String?, Int)] = [("EHLO client.example.net\r\n", 1), ("AUTH PLAIN \(Self.b64("\0alice\0alice-secret"))\r\n", 1),
                                      ("MAIL FROM:<alice@example.org>\r\n", 1)]
        for to in remote { auth.append(("RCPT TO:<\(to)>\r\n", 1)) }
        let a = try await Client.raw(port: gw.port, auth)
        #expect(a.replies[1] == ["235 2.7.0 Authentication successful"])
        for (to, r) in zip(remote, a.replies.dropFirst(3)) {
            #expect(r.first?.hasPrefix("250 2.1.5") == true, "\(to): \(r)")
        }
        await gw.stop()
        down.stop()
    }

    @Test func aBrokenPasswdFileStopsTheStartAndIsRefusedOnReload() async throws {
        let down = try await RecordingDownstream.start()
        let (gw, certs) = try await Self.gateway(down, plaintext: true)
        try Data("alice:{PLAIN}secret\n".utf8).write(to: URL(fileURLWithPath: certs.dir + "/passwd"))
        let errors = gw.server.reloadUsers()
        #expect(errors == ["\(certs.dir)/passwd:1: user 'alice': scheme {PLAIN} is not supported (use BLF-CRYPT, CRYPT, SHA256-CRYPT, SHA512-CRYPT)"])
        let d = try await Client.raw(port: gw.port, [("EHLO client.example.net\r\n", 1), ("AUTH PLAIN \(Self.b64("\0alice\0alice-secret"))\r\n", 1)])
        #expect(d.replies[1] == ["235 2.7.0 Authentication successful"], "the users in force stay")
        await gw.stop()
        #expect(throws: PasswdFileError.self) {
            var c = GatewayConfig()
            c.auth.passwdFile = certs.dir + "/passwd"
            _ = try GatewayServer(config: c, log: gw.log)
        }
        down.stop()
    }

    /// The anvil counts an IPv6 client by its /64 and an IPv4 one by its address, reserves
    /// each attempt before its hash is checked (parallel connections cannot exceed the
    /// limit) and forgets after the window.
    @Test func theLimiterCountsSlash64sAndReservesAttempts() {
        let l = AuthLimiter(limit: 3, window: .seconds(60))
        let t0 = ContinuousClock.now
        let a = IPAddress("2001:db8:1:2::1")!, b = IPAddress("2001:db8:1:2:ffff::9")!, other = IPAddress("2001:db8:1:3::1")!
        #expect(AuthLimiter.key(a) == AuthLimiter.key(b))
        #expect(AuthLimiter.key(IPAddress("192.0.2.1")!) != AuthLimiter.key(IPAddress("192.0.2.2")!))
        // Three attempts in flight at once use the whole allowance.
        #expect(l.reserve(a, now: t0) && l.reserve(b, now: t0) && l.reserve(a, now: t0))
        #expect(!l.reserve(b, now: t0), "a fourth parallel attempt from the same /64")
        #expect(l.reserve(other, now: t0))
        l.settle(a, failed: false, now: t0)
        #expect(l.reserve(a, now: t0), "a settled success frees its slot")
        for _ in 0..<3 { l.settle(a, failed: true, now: t0) }
        #expect(l.isLockedOut(b, now: t0))
        #expect(!l.reserve(b, now: t0))
        #expect(!l.isLockedOut(other, now: t0))
        #expect(!l.isLockedOut(b, now: t0 + .seconds(61)))
        #expect(l.reserve(b, now: t0 + .seconds(61)))
    }
}
