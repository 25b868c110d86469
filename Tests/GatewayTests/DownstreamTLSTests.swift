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
}
