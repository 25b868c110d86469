/// Which protocol a listener speaks.
public enum SMTPDialect: String, Sendable, CaseIterable {
    /// RFC 5321: HELO or EHLO, one reply to the end of data.
    case smtp
    /// RFC 2033: LHLO, and after the end of data one reply per accepted recipient.
    case lmtp

    /// The protocol word for the `Received:` field (RFC 3848).
    public func receivedProtocol(extended: Bool, utf8: Bool) -> String {
        switch self {
        case .smtp: return utf8 ? "UTF8SMTP" : extended ? "ESMTP" : "SMTP"
        case .lmtp: return utf8 ? "UTF8LMTP" : "LMTP"
        }
    }
}
