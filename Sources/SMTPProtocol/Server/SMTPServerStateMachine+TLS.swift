extension SMTPServerStateMachine {
    /// STARTTLS (RFC 3207). The 220 is the last plaintext the session sends: the inbound
    /// handler starts TLS as it writes it and throws away whatever the client sent after
    /// the command. Refused when not offered (502), under TLS already or inside a
    /// transaction (503).
    mutating func startTLS() -> [SMTPServerAction] {
        guard configuration.offersSTARTTLS else {
            return refuse(currentStage, "protocol", "not-implemented", SMTPReply(502, "5.5.1", "STARTTLS not available"),
                          "STARTTLS is not offered on this listener")
        }
        if tls != nil { return badSequence("TLS already active") }
        if transaction != nil { return badSequence("STARTTLS inside a mail transaction") }
        phase = .handshake
        pending = .handshake
        return [.send(SMTPReply(220, "2.0.0", "Ready to start TLS"))]
    }

    /// The handshake is done. After STARTTLS everything learnt before is forgotten (RFC
    /// 3207 §4.2): the client must greet again. With implicit TLS it comes before `connected`.
    mutating func tlsEstablished(_ info: SMTPTLSInfo) -> [SMTPServerAction] {
        tls = info
        guard phase == .handshake else { return [] }
        helo = nil
        heloVerb = nil
        heloCandidate = nil
        extended = false
        authUser = nil
        sasl = nil
        var reason = "TLS established: \(info.summary)"
        if info.discardedOctets > 0 {
            reason += "; \(info.discardedOctets) octets sent after STARTTLS before the handshake discarded unread"
        }
        return ready([.log(decision(.helo, "tls", "established", "continue", nil, reason))])
    }

    mutating func tlsFailed(_ why: String) -> [SMTPServerAction] {
        [.log(decision(currentStage, "tls", "handshake-failed", "tempfail", nil, why)), close(.tlsFailed, detail: why)]
    }
}
