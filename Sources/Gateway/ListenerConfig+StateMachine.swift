import SMTPProtocol

extension ListenerConfig {
    public var dialect: SMTPDialect { `protocol` == "lmtp" ? .lmtp : .smtp }

    /// The state machine's view of this listener, for one client.
    func machineConfiguration(helloName: String, client: IPAddress, gateway: GatewayConfig) -> SMTPServerConfiguration {
        var c = SMTPServerConfiguration(helloName: helloName)
        c.dialect = dialect
        c.greeting = smtpGreeting
        c.maxRecipients = maxRecipients
        c.maxMessageSize = maxMessageOctets
        c.maxErrors = maxUnrecognizedCommands
        c.heloRequired = heloEhloEnforcement
        c.parserOptions = CommandParserOptions(addressBracketsEnforcement: addressBracketsEnforcement)
        c.clientTrusted = isAuthorized(client)
        c.allowUntrustedRouting = gateway.allowUntrustedRouting
        c.verifyRecipients = gateway.downstream.verifyRecipients
        c.connectionTimeout = connectionTimeout
        c.dataDeadline = dataDeadline
        c.clientAddress = client.description
        c.isLocalDomain = { gateway.isLocal(domain: $0) }
        return c
    }
}
