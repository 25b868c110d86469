import Foundation
import SMTPProtocol

/// The RFC 5321 §4.4 trace field the gateway puts on top of every message it forwards.
enum ReceivedField {
    static func text(transaction t: SMTPTransaction, dialect: SMTPDialect, extended: Bool, helo: String?,
                     client: IPAddress, by: String, tls: SMTPTLSInfo? = nil, authenticated: Bool = false) -> String {
        let proto = dialect.receivedProtocol(extended: extended, utf8: t.parameters.smtpUTF8, tls: tls != nil, authenticated: authenticated)
        let literal: String
        if case .v6 = client { literal = "IPv6:\(client)" } else { literal = client.description }
        // A HELO that is no domain or address literal is the client's text: it goes into the
        // comment, escaped, never into the from-domain.
        let from: String
        if let h = helo, AddressParser.isDomain(Substring(h), allowUTF8: true) || AddressParser.parseAddressLiteral(Substring(h)) != nil {
            from = "\(h) ([\(literal)])"
        } else {
            from = "unknown (\(helo.map { "helo=\(HeaderText.comment($0)) " } ?? "")[\(literal)])"
        }
        var h = "Received: from \(from)\r\n\tby \(by) (MailGate) with \(proto) id \(t.id)"
        if t.recipients.count == 1 { h += "\r\n\tfor <\(t.recipients[0])>" }
        // RFC 8314 §4.3's tls clause names the cipher suite; the version goes in a comment.
        if let tls { h += "\r\n\ttls \(tls.cipher) (\(tls.version))" }
        return h + "; \(rfc5322Date())\r\n"
    }

    static func rfc5322Date() -> String {
        var t = time(nil)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S +0000", &tmv)
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
