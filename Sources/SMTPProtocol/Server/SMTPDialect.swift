/// Which protocol a listener speaks.
public enum SMTPDialect: String, Sendable, CaseIterable {
    /// RFC 5321: HELO or EHLO, one reply to the end of data.
    case smtp
    /// RFC 2033: LHLO, and after the end of data one reply per accepted recipient.
    case lmtp

    /// The protocol word for the `Received:` field (RFC 3848, RFC 6531): `S` for TLS, `A`
    /// for AUTH (registered for ESMTP, LMTP and their UTF8 forms; plain SMTP has none).
    public func receivedProtocol(extended: Bool, utf8: Bool, tls: Bool = false, authenticated: Bool = false) -> String {
        let base: String
        switch self {
        case .smtp: base = utf8 ? "UTF8SMTP" : extended ? "ESMTP" : "SMTP"
        case .lmtp: base = utf8 ? "UTF8LMTP" : "LMTP"
        }
        guard base != "SMTP" else { return base }
        return base + (tls ? "S" : "") + (authenticated ? "A" : "")
    }
}
