import Testing
import SMTPProtocol

/// STARTTLS in the state machine (RFC 3207): offered only where configured and before TLS,
/// answered 220 then nothing until the handshake, everything learnt before TLS forgotten.
@Suite struct TLSMachineTests {
    static let info = SMTPTLSInfo(version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", serverName: "mx.test", discardedOctets: 17)

    static func offering(_ configure: (inout SMTPServerConfiguration) -> Void = { _ in }) -> MachineHarness {
        var h = MachineHarness { c in
            c.offersSTARTTLS = true
            configure(&c)
        }
        h.connect()
        return h
    }

    @Test func starttlsIsAdvertisedOnlyBeforeTLS() {
        var h = Self.offering()
        let ehlo = h.send("EHLO client.example.net")
        #expect(ehlo.first?.lines.contains("STARTTLS") == true)
        #expect(h.send("STARTTLS").map(\.summary) == ["220 2.0.0 Ready to start TLS"])
        #expect(h.machine.phase == .handshake)
        h.feed(.tlsEstablished(Self.info))
        #expect(h.machine.phase == .command)
        #expect(h.send("EHLO client.example.net").first?.lines.contains("STARTTLS") == false)
        #expect(MachineHarness().machine.extensions.contains("STARTTLS") == false)
    }

    @Test func requireTLSIsOfferedAndTakenOnlyUnderTLS() {
        var h = Self.offering { $0.offersREQUIRETLS = true }
        #expect(h.send("EHLO client.example.net").first?.lines.contains("REQUIRETLS") == false)
        #expect(h.send("MAIL FROM:<a@example.net> REQUIRETLS").map(\.summary) == ["555 5.5.4 Unsupported MAIL parameter REQUIRETLS"])
        h.send("STARTTLS")
        h.feed(.tlsEstablished(Self.info))
        #expect(h.send("EHLO client.example.net").first?.lines.contains("REQUIRETLS") == true)
        #expect(h.send("MAIL FROM:<a@example.net> REQUIRETLS=yes").map(\.summary) == ["501 5.5.4 REQUIRETLS takes no value"])
        h.send("MAIL FROM:<a@example.net> REQUIRETLS")
        #expect(h.machine.transaction?.parameters.requireTLS == true)
    }

    @Test func aCommandDuringTheHandshakeIsNeverRead() {
        var h = Self.offering()
        h.send("EHLO client.example.net", "STARTTLS")
        #expect(h.send("MAIL FROM:<a@example.net>").isEmpty)
        #expect(h.machine.transaction == nil)
    }

    @Test func afterTheHandshakeTheClientGreetsAgain() {
        var h = Self.offering()
        h.send("EHLO client.example.net", "STARTTLS")
        h.feed(.tlsEstablished(Self.info))
        #expect(h.machine.helo == nil)
        #expect(h.send("MAIL FROM:<a@example.net>").map(\.summary) == ["503 5.5.1 Send HELO/EHLO first"])
        let d = h.decisions.first { $0.check == "tls" }
        #expect(d?.result == "established")
        #expect(d?.reason == "TLS established: TLSv1.3 TLS_AES_128_GCM_SHA256 sni=mx.test; 17 octets sent after STARTTLS before the handshake discarded unread")
        #expect(h.codes("EHLO client.example.net", "MAIL FROM:<a@example.net>") == [250, 250])
        #expect(h.machine.tls == Self.info)
    }

    @Test func starttlsIsRefusedWhereItCannotBeHonoured() {
        var plain = MachineHarness()
        plain.connect()
        plain.send("EHLO client.example.net")
        #expect(plain.send("STARTTLS").map(\.summary) == ["502 5.5.1 STARTTLS not available"])
        var h = Self.offering()
        h.send("EHLO client.example.net", "MAIL FROM:<a@example.net>")
        #expect(h.send("STARTTLS").map(\.summary) == ["503 5.5.1 STARTTLS inside a mail transaction"])
        h.send("RSET", "STARTTLS")
        h.feed(.tlsEstablished(Self.info))
        h.send("EHLO client.example.net")
        #expect(h.send("STARTTLS").map(\.summary) == ["503 5.5.1 TLS already active"])
        #expect(h.send("STARTTLS now").map(\.code) == [501])
    }

    @Test func tlsRequiredRefusesMAILInPlaintext() {
        var h = Self.offering { $0.tlsRequired = true }
        h.send("EHLO client.example.net")
        #expect(h.send("MAIL FROM:<a@example.net>").map(\.summary) == ["530 5.7.0 Must issue a STARTTLS command first"])
        #expect(h.decisions.last?.check == "tls")
        h.send("STARTTLS")
        h.feed(.tlsEstablished(Self.info))
        #expect(h.codes("EHLO client.example.net", "MAIL FROM:<a@example.net>") == [250, 250])
    }

    @Test func aFailedHandshakeIsLoggedAndCloses() {
        var h = Self.offering()
        h.send("EHLO client.example.net", "STARTTLS")
        h.feed(.tlsFailed("TLS handshake failed: bad record"))
        #expect(h.closed == .tlsFailed)
        #expect(h.decisions.last?.result == "handshake-failed")
        #expect(h.decisions.last?.reason == "TLS handshake failed: bad record")
    }

    @Test func implicitTLSIsKnownBeforeTheGreeting() {
        var h = MachineHarness()
        h.feed(.tlsEstablished(Self.info))
        #expect(h.connect() == 220)
        #expect(h.machine.tls == Self.info)
        #expect(h.machine.phase == .command)
    }
}
