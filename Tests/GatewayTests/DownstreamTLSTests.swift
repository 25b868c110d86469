import Foundation
import Testing
@testable import Gateway

/// STARTTLS toward the downstream, with a second gateway as the TLS downstream: `required`
/// checks the certificate against the configured CA and name and refuses (451) a
/// self-signed one or a downstream without STARTTLS; `opportunistic` falls back to plaintext.
@Suite(.serialized) struct DownstreamTLSTests {
    /// Gateway B (TLS with `cert`, or none) in front of a recording sink, and gateway A
    /// relaying to B with `tls`.
    static func chain(_ certs: TestCertificates, cert: (certificate: String, key: String)?, _ tls: DownstreamTLSConfig)
        async throws -> (a: TestGateway, b: TestGateway, sink: RecordingDownstream) {
        let sink = try await RecordingDownstream.start()
        let b = try await TestGateway(downstream: ["smtp:127.0.0.1:\(sink.port)"]) { c in
            if let cert {
                c.listeners[0].tls.mode = .starttls
                c.listeners[0].tls.certificates = [ListenerTLSConfig.Certificate(certificate: cert.certificate, key: cert.key)]
            }
        }
        let a = try await TestGateway(downstream: ["smtp:127.0.0.1:\(b.port)"]) { c in c.downstream.tls = tls }
        return (a, b, sink)
    }

    static func required(_ certs: TestCertificates) -> DownstreamTLSConfig {
        var t = DownstreamTLSConfig()
        t.mode = .required
        t.caFile = certs.caFile
        t.name = "mx.example.org"
        return t
    }

    static func text(_ sink: RecordingDownstream) -> String { String(decoding: sink.messages.first?.data ?? [], as: UTF8.self) }

    static func send(_ port: Int) async throws -> Int {
        let r = try await Client.smtplib(port: port, from: "a@example.net", to: ["b@example.org"], data: "Subject: t\r\n\r\nhello\r\n")
        return r["ok"] as? Bool == true ? 250 : r["code"] as? Int ?? 0
    }

    @Test func requiredDeliversOverAVerifiedConnection() async throws {
        let certs = try await TestCertificates()
        let (a, b, sink) = try await Self.chain(certs, cert: try await certs.issue("mx.example.org"), Self.required(certs))
        #expect(try await Self.send(a.port) == 250)
        #expect(sink.messages.count == 1)
        let text = Self.text(sink)
        #expect(text.contains("by gw.test (MailGate) with ESMTPS id "), "B was reached over TLS: \(text)")
        await a.stop(); await b.stop(); sink.stop()
    }

    @Test func requiredRefusesASelfSignedCertificateAWrongNameAndNoSTARTTLS() async throws {
        let certs = try await TestCertificates()
        let selfSigned = try await certs.issue("mx.example.org", file: "self", selfSigned: true)
        for (cert, label) in [(selfSigned, "self-signed"), (try await certs.issue("other.example.org"), "wrong name"), (nil, "no STARTTLS")]
            as [((certificate: String, key: String)?, String)] {
            let (a, b, sink) = try await Self.chain(certs, cert: cert, Self.required(certs))
            #expect(try await Self.send(a.port) == 451, "\(label)")
            #expect(sink.messages.isEmpty, "\(label)")
            let records = try await a.records(waitingFor: "transaction")
            let txn = records.first { $0["event"] as? String == "transaction" }
            #expect(txn?["action"] as? String == "tempfail", "\(label)")
            await a.stop(); await b.stop(); sink.stop()
        }
    }

    @Test func opportunisticFallsBackToPlaintext() async throws {
        let certs = try await TestCertificates()
        var t = DownstreamTLSConfig()
        t.mode = .opportunistic
        let (a, b, sink) = try await Self.chain(certs, cert: nil, t)
        #expect(try await Self.send(a.port) == 250)
        let plain = Self.text(sink)
        #expect(plain.contains("by gw.test (MailGate) with ESMTP id "), "\(plain)")
        await a.stop(); await b.stop(); sink.stop()
        // Offered: taken, a self-signed certificate included (nothing is checked).
        let (a2, b2, sink2) = try await Self.chain(certs, cert: try await certs.issue("x.example", file: "x", selfSigned: true), t)
        #expect(try await Self.send(a2.port) == 250)
        let encrypted = Self.text(sink2)
        #expect(encrypted.contains(" with ESMTPS id "), "\(encrypted)")
        await a2.stop(); await b2.stop(); sink2.stop()
    }

    // MARK: REQUIRETLS (RFC 8689)

    /// Gateway A (STARTTLS listener, `downstream` toward B) and gateway B (STARTTLS, final
    /// delivery into a maildir, so it honours REQUIRETLS itself).
    static func requireTLSChain(_ certs: TestCertificates, _ tls: DownstreamTLSConfig) async throws -> (a: TestGateway, b: TestGateway, maildir: String) {
        let mx = try await certs.issue("mx.example.org")
        let cert = [ListenerTLSConfig.Certificate(certificate: mx.certificate, key: mx.key)]
        let maildir = NSTemporaryDirectory() + "mailgate-requiretls-" + UUID().uuidString
        let b = try await TestGateway(downstream: ["maildir:\(maildir)"]) { c in
            c.listeners[0].tls.mode = .starttls
            c.listeners[0].tls.certificates = cert
        }
        let a = try await TestGateway(downstream: ["smtp:127.0.0.1:\(b.port)"]) { c in
            c.downstream.tls = tls
            c.listeners[0].tls.mode = .starttls
            c.listeners[0].tls.certificates = cert
        }
        return (a, b, maildir)
    }

    static func requireTLSDialogue(_ port: Int, _ certs: TestCertificates) async throws -> Client.Dialogue {
        try await Client.dialogue(port: port, [.send("EHLO client.example.net\r\n", replies: 1), .send("STARTTLS\r\n", replies: 1),
                                               .tls(serverName: "mx.example.org", cafile: certs.caFile),
                                               .send("EHLO client.example.net\r\n", replies: 1),
                                               .send("MAIL FROM:<a@example.net> REQUIRETLS\r\n", replies: 1),
                                               .send("RCPT TO:<b@example.org>\r\n", replies: 1), .send("DATA\r\n", replies: 1),
                                               .send("Subject: secret\r\n\r\nhello\r\n.\r\n", replies: 1), .send("QUIT\r\n", replies: 1)])
    }

    static func transaction(_ gw: TestGateway, count: Int) async throws -> [String: Any]? {
        try await gw.records(waitingFor: "transaction", count: count).last { $0["event"] as? String == "transaction" }
    }

    @Test func requireTLSIsOfferedOnlyUnderTLSAndTravelsOnlyOverVerifiedTLS() async throws {
        let certs = try await TestCertificates()
        let (a, b, maildir) = try await Self.requireTLSChain(certs, Self.required(certs))
        // B's capabilities are learnt from the first delivery (as for DSN): not offered before.
        #expect(try await Self.send(a.port) == 250)
        let d = try await Self.requireTLSDialogue(a.port, certs)
        #expect(d.replies[0].first?.contains("REQUIRETLS") == false, "never before TLS: \(d.replies[0])")
        #expect(d.replies[2].first?.contains("\n250-REQUIRETLS\n") == true, "\(d.replies)")
        #expect(d.replies[3] == ["250 2.1.0 Sender <a@example.net> OK"], "\(d.replies)")
        #expect(d.replies[6].first?.hasPrefix("250 ") == true, "\(d.replies)")
        let mine = try #require(try await Self.transaction(a, count: 2))
        #expect(mine["requiretls"] as? Bool == true)
        #expect((mine["downstream"] as? [String: Any])?["tls"] as? String == "tls-verified", "\(mine)")
        // B was handed REQUIRETLS on its MAIL, over TLS.
        let theirs = try #require(try await Self.transaction(b, count: 2))
        #expect(theirs["requiretls"] as? Bool == true, "\(theirs)")
        #expect((theirs["tls"] as? [String: Any])?["version"] != nil)
        let files = try FileManager.default.contentsOfDirectory(atPath: maildir + "/new")
        #expect(files.count == 2)
        // Plaintext: neither offered nor taken.
        let plain = try await Client.raw(port: a.port, [("EHLO client.example.net\r\n", 1), ("MAIL FROM:<a@example.net> REQUIRETLS\r\n", 1)])
        #expect(plain.replies[0].first?.contains("REQUIRETLS") == false)
        #expect(plain.replies[1] == ["555 5.5.4 Unsupported MAIL parameter REQUIRETLS"])
        await a.stop(); await b.stop()
        try? FileManager.default.removeItem(atPath: maildir)
    }

    @Test func requireTLSIsNotOfferedWhenTheDownstreamHopIsNotVerified() async throws {
        let certs = try await TestCertificates()
        for (mode, verify) in [(DownstreamTLSConfig.Mode.opportunistic, true), (.required, false)] {
            var t = Self.required(certs)
            t.mode = mode
            t.verify = verify
            let (a, b, maildir) = try await Self.requireTLSChain(certs, t)
            #expect(try await Self.send(a.port) == 250)
            let d = try await Self.requireTLSDialogue(a.port, certs)
            #expect(d.replies[2].first?.contains("REQUIRETLS") == false, "\(mode) verify \(verify): \(d.replies)")
            #expect(d.replies[3] == ["555 5.5.4 Unsupported MAIL parameter REQUIRETLS"], "\(mode) verify \(verify)")
            let files = try FileManager.default.contentsOfDirectory(atPath: maildir + "/new")
            #expect(files.count == 1, "only the plain message")
            await a.stop(); await b.stop()
            try? FileManager.default.removeItem(atPath: maildir)
        }
    }
}
