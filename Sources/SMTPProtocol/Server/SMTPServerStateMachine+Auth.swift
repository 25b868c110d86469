extension SMTPServerStateMachine {
    /// AUTH is announced: `announce` always, `required` to clients outside
    /// authorizedAddresses; only under TLS unless plaintext AUTH is allowed; never twice.
    var announcesAuth: Bool {
        let c = configuration
        guard c.authMode != .off, authUser == nil, tls != nil || c.authAllowPlaintext else { return false }
        return c.authMode == .announce || !c.clientTrusted
    }

    /// `AUTH mechanism [initial-response]` (RFC 4954).
    mutating func auth(_ argument: String) -> [SMTPServerAction] {
        let c = configuration
        guard c.authMode != .off else {
            return refuse(currentStage, "protocol", "not-implemented", SMTPReply(502, "5.5.1", "AUTH not available"), "AUTH is not offered on this listener")
        }
        if !extended { return badSequence("Send EHLO first") }
        if authUser != nil { return badSequence("Already authenticated") }
        if transaction != nil { return badSequence("AUTH not permitted during a mail transaction") }
        if tls == nil && !c.authAllowPlaintext {
            return authRefusal("encryption-required", SMTPReply(538, "5.7.11", "Encryption required for requested authentication mechanism"),
                               "AUTH before STARTTLS (authAllowPlaintext is off)")
        }
        let words = argument.split(separator: " ", omittingEmptySubsequences: true)
        guard let first = words.first, words.count <= 2, let mechanism = SASLMechanism(rawValue: first.uppercased()) else {
            return authRefusal("unknown-mechanism", SMTPReply(504, "5.5.4", "Unrecognized authentication type"),
                               "AUTH \(String((words.first ?? "").prefix(20)))")
        }
        var exchange = SASLExchange(step: mechanism == .plain ? .plain : .loginUser)
        guard words.count == 2 else {
            sasl = exchange
            return [.send(SMTPReply(code: 334, enhanced: nil, lines: [mechanism == .plain ? "" : SASLExchange.usernameChallenge]))]
        }
        return saslResponse(words[1], &exchange)
    }

    /// A line answering a 334 challenge.
    mutating func saslLine(_ line: SMTPLine) -> [SMTPServerAction] {
        guard var exchange = sasl else { return [] }
        sasl = nil
        let text = String(decoding: line.bytes.readableBytesView, as: UTF8.self)
        if text == "*" {
            return authRefusal("cancelled", SMTPReply(501, "5.0.0", "Authentication cancelled"), "the client cancelled AUTH \(exchange.mechanism.rawValue)")
        }
        return saslResponse(Substring(text), &exchange)
    }

    mutating func saslResponse(_ text: Substring, _ exchange: inout SASLExchange) -> [SMTPServerAction] {
        guard let bytes = SASLExchange.decode(text) else {
            return authRefusal("syntax", SMTPReply(501, "5.5.2", "Cannot decode the response"), "AUTH \(exchange.mechanism.rawValue): response is not base64")
        }
        switch exchange.step {
        case .plain:
            guard let (user, password) = SASLExchange.plain(bytes) else {
                return authRefusal("syntax", SMTPReply(501, "5.5.2", "Malformed PLAIN response"), "AUTH PLAIN: not authzid NUL user NUL password (or another authzid)")
            }
            return checking(SMTPCredentials(mechanism: .plain, user: user, password: password))
        case .loginUser:
            guard let user = String(validating: bytes, as: UTF8.self), !user.isEmpty, !user.contains("\0") else {
                return authRefusal("syntax", SMTPReply(501, "5.5.2", "Malformed user name"), "AUTH LOGIN: user name empty or not UTF-8")
            }
            sasl = SASLExchange(step: .loginPassword(user: user))
            return [.send(SMTPReply(code: 334, enhanced: nil, lines: [SASLExchange.passwordChallenge]))]
        case .loginPassword(let user):
            guard let password = String(validating: bytes, as: UTF8.self) else {
                return authRefusal("syntax", SMTPReply(501, "5.5.2", "Malformed password"), "AUTH LOGIN: password not UTF-8")
            }
            return checking(SMTPCredentials(mechanism: .login, user: user, password: password))
        }
    }

    mutating func checking(_ credentials: SMTPCredentials) -> [SMTPServerAction] {
        awaiting(.credentials(credentials), [.checkCredentials(credentials)])
    }

    /// The driver's answer: 235, 535 (and past the per-session limit 421), 454.
    mutating func credentialsChecked(_ result: SMTPCredentialCheck) -> [SMTPServerAction] {
        guard case .credentials(let cred) = pending else { return [] }
        switch result {
        case .accepted(let user):
            authUser = user
            let d = decision(currentStage, "auth", "success", "continue", nil, "\(cred)")
            return ready([.log(d), .send(SMTPReply(235, "2.7.0", "Authentication successful"))])
        case .rejected:
            return authFailed("failed", SMTPReply(535, "5.7.8", "Authentication credentials invalid"),
                              "\(cred): wrong password or unknown user", credentials: cred)
        case .lockedOut:
            // Counted as a failure of this session too: a locked-out client that keeps
            // trying is closed after maxAuthFailures, not answered forever.
            return authFailed("locked-out", SMTPReply(454, "4.7.0", "Too many authentication failures from your address, try again later"),
                              "\(cred): client address locked out after repeated failures", credentials: cred)
        case .unavailable(let why):
            return ready(authRefusal("error", SMTPReply(454, "4.7.0", "Temporary authentication failure"), "\(cred): \(why)"))
        }
    }

    /// A failed AUTH: refused, counted, and past maxAuthFailures in the session 421 and close.
    mutating func authFailed(_ result: String, _ r: SMTPReply, _ reason: String, credentials cred: SMTPCredentials) -> [SMTPServerAction] {
        authFailures += 1
        let out = authRefusal(result, r, "\(reason) (\(authFailures) in this session)", credentials: cred)
        guard authFailures >= configuration.maxAuthFailures && phase != .closed else { return ready(out) }
        let bye = SMTPReply(421, "4.7.0", "Too many authentication failures, closing connection")
        return ready(out) + [.log(decision(currentStage, "auth", "too-many-failures", "tempfail", bye,
                                           "\(authFailures) failed AUTH attempts (limit \(configuration.maxAuthFailures))")),
                             .send(bye), close(.tooManyErrors)]
    }

    /// A refused AUTH, logged (a failed check also as `authFailed`, for fail2ban).
    mutating func authRefusal(_ result: String, _ r: SMTPReply, _ reason: String, credentials: SMTPCredentials? = nil) -> [SMTPServerAction] {
        let failed: [SMTPServerAction] = credentials.map { [.authFailed($0, result: result)] } ?? []
        return failed + refuse(currentStage, "auth", result, r, reason)
    }
}
