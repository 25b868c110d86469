import Foundation
import Testing
@testable import Gateway

/// TLS on the listener through real sockets with Python's ssl module: STARTTLS (RFC 3207)
/// with the session started over, nothing pipelined before the handshake ever run
/// (CVE-2011-0411), implicit TLS, certificates by SNI and reloaded, tlsRequired, and what
/// the log and the Received field say.
@Suite(.serialized) struct TLSTests {
    static func gateway(_ down: RecordingDownstream, _ certs: TestCertificates, mode: ListenerTLSConfig.Mode = .starttls,
                        required: Bool = false, extra: [ListenerTLSConfig.Certificate] = []) async throws -> TestGateway {
        let mx = try await certs.issue("mx.example.org")
        return try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].tls.mode = mode
            c.listeners[0].tls.required = required
            c.listeners[0].tls.certificates = [ListenerTLSConfig.Certificate(certificate: mx.certificate, key: mx.key, names: ["mx.example.org"])] + extra
        }
    }

    static let envelope: [Client.Step] = [.send("EHLO client.example.net\r\n", replies: 1), .send("MAIL FROM:<a@example.net>\r\n", replies: 1),
                                          .send("RCPT TO:<b@example.org>\r\n", replies: 1),
                                          .send("DATA\r\n", replies: 1), .send("Subject: t\r\n\r\nhello\r\n.\r\n", replies: 1)]

    @Test func starttlsStartsTheSessionOverAndTheMessageSaysSo() async throws {
        let down = try await RecordingDownstream.start()
        let certs = try await TestCertificates()
        let gw = try await Self.gateway(down, certs)
        let d = try await Client.dialogue(port: gw.port, [.send("EHLO client.example.net\r\n", replies: 1), .send("STARTTLS\r\n", replies: 1),
                                                          .tls(serverName: "mx.example.org", cafile: certs.caFile),
                                                          .send("MAIL FROM:<a@example.net>\r\n", replies: 1)]
                                          + Self.envelope + [.send("STARTTLS\r\n", replies: 1), .send("QUIT\r\n", replies: 1)])
        #expect(d.replies[0].first?.contains("\n250-STARTTLS\n") == true, "\(d.replies)")
        #expect(d.replies[1] == ["220 2.0.0 Ready to start TLS"])
        #expect(d.tls.first?["version"] == "TLSv1.3", "\(d.tls)")
        #expect(d.tls.first?["subject_cn"] == "mx.example.org")
        #expect(d.replies[2] == ["503 5.5.1 Send HELO/EHLO first"], "the HELO before TLS is forgotten")
        #expect(d.replies[3].first?.contains("STARTTLS") == false)
        #expect(d.replies[7].first?.hasPrefix("250 ") == true, "\(d.replies)")
        #expect(d.replies[8] == ["503 5.5.1 TLS already active"])
        let text = String(decoding: down.messages.first?.data ?? [], as: UTF8.self)
        #expect(text.contains(" with ESMTPS id "), "\(text)")
        #expect(text.contains("\r\n\ttls TLS_AES_"), "\(text)")
        let records = try await gw.records(waitingFor: "session.close")
        let txn = try #require(records.first { $0["event"] as? String == "transaction" })
        let tls = try #require(txn["tls"] as? [String: Any])
        #expect(tls["version"] as? String == "TLSv1.3")
        #expect((tls["cipher"] as? String)?.hasPrefix("TLS_AES_") == true, "\(tls)")
        #expect(tls["sni"] as? String == "mx.example.org")
        let est = records.first { $0["check"] as? String == "tls" }
        #expect(est?["result"] as? String == "established")
        await gw.stop()
        down.stop()
    }

    /// STARTTLS and a command in one segment, and the same in two writes before the
    /// handshake: the command is never run.
    @Test(arguments: [false, true])
    func nothingSentBeforeTheHandshakeIsRun(split: Bool) async throws {
        let down = try await RecordingDownstream.start()
        let certs = try await TestCertificates()
        let gw = try await Self.gateway(down, certs)
        let injected: [Client.Step] = split
            ? [.send("STARTTLS\r\n", replies: 0), .send("MAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.org>\r\n", replies: 1)]
            : [.send("STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.org>\r\n", replies: 1)]
        let d = try await Client.dialogue(port: gw.port, [.send("EHLO client.example.net\r\n", replies: 1)] + injected
                                          + [.tls(cafile: certs.caFile), .send("EHLO client.example.net\r\n", replies: 1),
                                             .send("RCPT TO:<b@example.org>\r\n", replies: 1), .send("QUIT\r\n", replies: 1)])
        let at = split ? 2 : 1
        #expect(d.replies[at] == ["220 2.0.0 Ready to start TLS"], "\(d.replies)")
        let records = try await gw.records(waitingFor: "session.close")
        #expect(!records.contains { $0["stage"] as? String == "mail" || $0["stage"] as? String == "rcpt" && $0["check"] as? String != "protocol" },
                "\(records)")
        if d.tls.first?["version"] != nil {
            // The injected octets were still plaintext in our buffers: thrown away.
            #expect(d.replies[at + 2] == ["503 5.5.1 Need MAIL before RCPT"], "\(d.replies)")
            let est = try #require(records.first { $0["check"] as? String == "tls" })
            #expect((est["reason"] as? String)?.contains("octets sent after STARTTLS before the handshake discarded unread") == true, "\(est)")
        } else {
            // They reached the TLS layer as garbage: the handshake fails, the session ends.
            #expect(split, "in one segment the bytes are always in the framer's buffer")
            #expect(records.contains { $0["result"] as? String == "handshake-failed" })
        }
        await gw.stop()
        down.stop()
    }

    /// RFC 3207 lets STARTTLS end a pipelined group: the replies owed to the commands
    /// before it are not its answer. A refused STARTTLS releases what followed it at once.
    @Test func starttlsAtTheEndOfAPipelinedGroupAndARefusedOne() async throws {
        let down = try await RecordingDownstream.start()
        let certs = try await TestCertificates()
        let gw = try await Self.gateway(down, certs)
        let d = try await Client.dialogue(port: gw.port, [.send("EHLO client.example.net\r\n", replies: 1),
                                                          .send("NOOP\r\nRSET\r\nSTARTTLS\r\n", replies: 3), .tls(cafile: certs.caFile),
                                                          .send("EHLO client.example.net\r\n", replies: 1), .send("QUIT\r\n", replies: 1)])
        #expect(d.replies[1] == ["250 2.0.0 OK", "250 2.0.0 Reset OK", "220 2.0.0 Ready to start TLS"], "\(d.replies)")
        #expect(d.tls.first?["version"] == "TLSv1.3", "\(d.tls)")
        #expect(d.replies[2].first?.hasPrefix("250-gw.test Hello") == true, "\(d.replies)")
        let r = try await Client.dialogue(port: gw.port, [.send("EHLO client.example.net\r\n", replies: 1),
                                                          .send("STARTTLS now\r\nNOOP\r\n", replies: 2), .send("QUIT\r\n", replies: 1)])
        #expect(r.replies[1] == ["501 5.5.4 Syntax: STARTTLS takes no arguments", "250 2.0.0 OK"], "\(r.replies)")
        await gw.stop()
        down.stop()
    }

    @Test func tlsRequiredRefusesMAILInPlaintext() async throws {
        let down = try await RecordingDownstream.start()
        let certs = try await TestCertificates()
        let gw = try await Self.gateway(down, certs, required: true)
        let d = try await Client.dialogue(port: gw.port, [.send("EHLO client.example.net\r\n", replies: 1),
                                                          .send("MAIL FROM:<a@example.net>\r\n", replies: 1), .send("QUIT\r\n", replies: 1)])
        #expect(d.replies[1] == ["530 5.7.0 Must issue a STARTTLS command first"])
        let e = try await Client.dialogue(port: gw.port, [.send("EHLO client.example.net\r\n", replies: 1), .send("STARTTLS\r\n", replies: 1),
                                                          .tls(cafile: certs.caFile)] + Self.envelope)
        #expect(e.replies.last?.first?.hasPrefix("250 ") == true, "\(e.replies)")
        #expect(down.messages.count == 1)
        await gw.stop()
        down.stop()
    }

    @Test func implicitTLSServesFromTheFirstByte() async throws {
        let down = try await RecordingDownstream.start()
        let certs = try await TestCertificates()
        let gw = try await Self.gateway(down, certs, mode: .implicit)
        let d = try await Client.dialogue(port: gw.port, Self.envelope + [.send("STARTTLS\r\n", replies: 1), .send("QUIT\r\n", replies: 1)],
                                          implicitTLS: .tls(serverName: "mx.example.org", cafile: certs.caFile))
        #expect(d.tls.first?["version"] == "TLSv1.3", "\(d.tls)")
        #expect(d.greeting.hasPrefix("220 gw.test ESMTP"), "\(d.greeting)")
        #expect(d.replies[0].first?.contains("STARTTLS") == false)
        #expect(d.replies[4].first?.hasPrefix("250 ") == true, "\(d.replies)")
        #expect(d.replies[5] == ["502 5.5.1 STARTTLS not available"])
        let text = String(decoding: down.messages.first?.data ?? [], as: UTF8.self)
        #expect(text.contains(" with ESMTPS id "), "\(text)")
        // A plaintext client on the implicit port: the handshake fails, logged with why.
        let p = try await Client.dialogue(port: gw.port, [], early: "EHLO client.example.net\r\n")
        #expect(!p.greeting.hasPrefix("220"), "a TLS alert at most")
        let records = try await gw.records(waitingFor: "session.close", count: 2)
        let failed = try #require(records.first { $0["result"] as? String == "handshake-failed" })
        #expect((failed["reason"] as? String)?.hasPrefix("TLS handshake failed: ") == true, "\(failed)")
        #expect(records.contains { $0["event"] as? String == "session.close" && $0["reason"] as? String == "tls-failed" }, "\(records)")
        await gw.stop()
        down.stop()
    }

    @Test func theCertificateIsChosenByServerName() async throws {
        let down = try await RecordingDownstream.start()
        let certs = try await TestCertificates()
        let other = try await certs.issue("smtp.example.net")
        let gw = try await Self.gateway(down, certs, extra: [ListenerTLSConfig.Certificate(certificate: other.certificate, key: other.key,
                                                                                          names: ["smtp.example.net", "*.example.com"])])
        for (name, cn) in [("smtp.example.net", "smtp.example.net"), ("mx.example.org", "mx.example.org"), (nil, "mx.example.org"),
                           ("unknown.example", "mx.example.org"), ("a.example.com", "smtp.example.net")] as [(String?, String)] {
            let d = try await Client.dialogue(port: gw.port, [.send("EHLO c.example.net\r\n", replies: 1), .send("STARTTLS\r\n", replies: 1),
                                                              .tls(serverName: name, cafile: certs.caFile), .send("QUIT\r\n", replies: 1)])
            #expect(d.tls.first?["subject_cn"] == cn, "\(name ?? "no name"): \(d.tls)")
        }
        let records = try await gw.records(waitingFor: "session.close", count: 5)
        #expect(records.compactMap { $0["check"] as? String == "tls" ? $0["reason"] as? String : nil }.contains { $0.hasSuffix(" sni=a.example.com") })
        await gw.stop()
        down.stop()
    }

    /// SIGHUP's reload: new sessions get the renewed certificate, a session in flight keeps
    /// its own and delivers; a broken file is refused and the last good one keeps serving.
    @Test func aRenewedCertificateServesNewSessionsAndABrokenOneIsRefused() async throws {
        let down = try await RecordingDownstream.start()
        let certs = try await TestCertificates()
        let gw = try await Self.gateway(down, certs)
        let cn: @Sendable (Client.Dialogue) -> String? = { $0.tls.first?["subject_cn"] }
        let port = gw.port, ca = certs.caFile
        async let inFlight = Client.dialogue(port: port, [.send("EHLO c.example.net\r\n", replies: 1), .send("STARTTLS\r\n", replies: 1),
                                                          .tls(cafile: ca), .sleep(1.5)] + Self.envelope)
        try await Task.sleep(for: .milliseconds(700))
        try await certs.issue("renewed.example.org", file: "mx.example.org")
        #expect(gw.server.reloadCertificates().isEmpty)
        let after = try await Client.dialogue(port: port, [.send("EHLO c.example.net\r\n", replies: 1), .send("STARTTLS\r\n", replies: 1),
                                                           .tls(cafile: ca), .send("QUIT\r\n", replies: 1)])
        #expect(cn(after) == "renewed.example.org", "\(after.tls)")
        let old = try await inFlight
        #expect(cn(old) == "mx.example.org", "\(old.tls)")
        #expect(old.replies.last?.first?.hasPrefix("250 ") == true, "\(old.replies)")
        try Data("not a key".utf8).write(to: URL(fileURLWithPath: certs.dir + "/mx.example.org.key"))
        let errors = gw.server.reloadCertificates()
        #expect(errors.count == 1 && errors[0].contains("mx.example.org"), "\(errors)")
        let still = try await Client.dialogue(port: port, [.send("EHLO c.example.net\r\n", replies: 1), .send("STARTTLS\r\n", replies: 1),
                                                           .tls(cafile: ca), .send("QUIT\r\n", replies: 1)])
        #expect(cn(still) == "renewed.example.org")
        let records = try await gw.records()
        #expect(records.filter { $0["event"] as? String == "tls.reload" }.compactMap { $0["result"] as? String } == ["ok", "refused"])
        await gw.stop()
        down.stop()
    }

    @Test func theConfigurationNamesEachMode() throws {
        let base = "listeners:\n  - name: smtp\n    bind: [\"127.0.0.1:0\"]\n"
        let certs = "    tlsCertificates:\n      - {certificate: a.pem, key: a.key, names: [MX.Example.org]}\n"
        let implicit = try ConfigLoader.parse(base + "    tls: implicit\n    tlsMinVersion: \"1.3\"\n" + certs, file: "t.yaml")
        #expect(implicit.listeners[0].tls.mode == .implicit)
        #expect(implicit.listeners[0].tls.minVersion == "1.3")
        #expect(implicit.listeners[0].tls.certificates == [ListenerTLSConfig.Certificate(certificate: "a.pem", key: "a.key", names: ["mx.example.org"])])
        #expect(try ConfigLoader.parse(base + "    tls: true\n    tlsRequired: true\n" + certs, file: "t.yaml").listeners[0].tls.mode == .starttls)
        for (bad, message) in [("    tls: true\n", "t.yaml:2: listener 'smtp': tls needs 'tlsCertificates'"),
                               ("    tlsRequired: true\n", "t.yaml:2: listener 'smtp': tlsRequired needs tls: true or implicit"),
                               ("    tls: sometimes\n" + certs, "t.yaml:4: 'tls (true, false or implicit)' must be true or false"),
                               ("    tls: true\n    tlsMinVersion: \"1.1\"\n" + certs, "t.yaml:5: 'tlsMinVersion' must be \"1.2\" or \"1.3\"")] {
            #expect(throws: [ConfigError].self) { try ConfigLoader.parse(base + bad, file: "t.yaml") }
            do { _ = try ConfigLoader.parse(base + bad, file: "t.yaml") } catch let e as [ConfigError] {
                #expect(e.map(\.description).contains(message), "\(e)")
            }
        }
    }
}
