import SMTPProtocol

extension ListenerConfig {
    public var dialect: SMTPDialect { `protocol` == "lmtp" ? .lmtp : .smtp }

    /// The state machine's view of this listener, for one client.
    /// `lmtpTarget`: some downstream target speaks LMTP; `unix`: the client came over a
    /// unix socket (it has no address, and is never trusted to relay).
    func machineConfiguration(helloName: String, client: IPAddress, unix: Bool, gateway: GatewayConfig, lmtpTarget: Bool) -> SMTPServerConfiguration {
        var c = SMTPServerConfiguration(helloName: helloName)
        c.dialect = dialect
        c.greeting = smtpGreeting
        // An SMTP client has one reply for the whole message; an LMTP target answers each
        // recipient. Mixed answers could only be told as 451 (a second copy for those
        // delivered), so with an LMTP target an SMTP transaction takes one recipient and
        // further RCPTs get 452 4.5.3 (the client sends them on in another transaction).
        c.maxRecipients = dialect == .smtp && lmtpTarget ? 1 : maxRecipients
        c.maxMessageSize = maxMessageOctets
        c.maxErrors = maxUnrecognizedCommands
        c.heloRequired = heloEhloEnforcement
        c.parserOptions = CommandParserOptions(addressBracketsEnforcement: addressBracketsEnforcement)
        c.clientTrusted = !unix && isAuthorized(client)
        c.allowUntrustedRouting = gateway.allowUntrustedRouting
        c.verifyRecipients = gateway.downstream.verifyRecipients
        c.offersSTARTTLS = tls.mode == .starttls
        c.tlsRequired = tls.required
        c.authMode = authRequired
        c.authAllowPlaintext = authAllowPlaintext
        c.maxAuthFailures = gateway.auth.maxFailuresPerSession
        c.verifyIdentity = verifyIdentity
        c.connectionTimeout = connectionTimeout
        c.dataDeadline = dataDeadline
        c.clientAddress = client.description
        c.isLocalDomain = { gateway.isLocal(domain: $0) }
        return c
    }
}
