/// What the state machine needs to know of its listener; fixed for a session.
public struct SMTPServerConfiguration: Sendable {
    public var dialect: SMTPDialect = .smtp
    /// This server's name: in the greeting, the HELO reply and the trace field.
    public var helloName: String
    /// The greeting text after `220 `; nil for "<helloName> ESMTP MailGate ready".
    public var greeting: String?
    /// RCPT commands accepted per transaction; past it 452 4.5.3.
    public var maxRecipients = 100
    /// Octets, 0 = unlimited: advertised as SIZE, enforced at MAIL and at the end of data.
    public var maxMessageSize = 0
    /// Refused commands (5xx) allowed between accepted messages; past it 421 and close
    /// (James' maxUnrecognizedCommands, Postfix's smtpd_hard_error_limit).
    public var maxErrors = 3
    /// HELO/EHLO/NOOP/RSET/VRFY/HELP allowed between accepted messages before each also
    /// counts as an error (Postfix's smtpd_junk_command_limit).
    public var maxJunkCommands = 100
    /// MAIL needs HELO/EHLO (LHLO) first (James' heloEhloEnforcement).
    public var heloRequired = true
    public var parserOptions = CommandParserOptions()
    /// A client in authorizedAddresses may relay.
    public var clientTrusted = false
    public var allowUntrustedRouting = false
    /// Ask the downstream about each recipient at RCPT.
    public var verifyRecipients = false
    /// Advertise DSN (RFC 3461) and take its parameters: the downstream offers it and they
    /// are passed on unchanged.
    public var offersDSN = false
    /// Advertise REQUIRETLS (RFC 8689) on encrypted sessions and take its MAIL parameter:
    /// every downstream hop is TLS with a verified certificate and honours it.
    public var offersREQUIRETLS = false
    /// Offer STARTTLS (RFC 3207) while the session is not encrypted.
    public var offersSTARTTLS = false
    /// MAIL needs TLS first (530 5.7.0).
    public var tlsRequired = false
    /// AUTH (RFC 4954): off, required to relay (announced outside authorizedAddresses), or
    /// always announced (James' authRequired false, true, announce).
    public var authMode = SMTPAuthMode.off
    /// Offer AUTH without TLS.
    public var authAllowPlaintext = false
    /// Failed AUTH attempts in a session before 421 and close.
    public var maxAuthFailures = 3
    /// An authenticated user's MAIL FROM must be one of its addresses (550 5.7.1).
    public var verifyIdentity = true
    /// Seconds, for reply and log texts.
    public var connectionTimeout = 300
    public var dataDeadline = 1800
    /// The client's address as text, for replies and log reasons.
    public var clientAddress = ""
    public var isLocalDomain: @Sendable (String) -> Bool = { _ in false }

    public init(helloName: String) {
        self.helloName = helloName
    }

    public var greetingReply: SMTPReply {
        SMTPReply(code: 220, enhanced: nil, lines: [greeting ?? "\(helloName) \(dialect == .lmtp ? "LMTP" : "ESMTP") MailGate ready"])
    }
}

/// James' `authRequired`.
public enum SMTPAuthMode: String, Sendable {
    case off = "false", required = "true", announce
}
