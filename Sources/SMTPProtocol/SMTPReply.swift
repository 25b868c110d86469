/// SMTPProtocol: the SMTP wire protocol as pure values and functions (RFC 5321, 1870, 2034,
/// 2920, 3463, 6152, 6531).
///
/// Parsing of command lines, addresses, ESMTP parameters and HELO arguments; encoding of
/// replies with enhanced status codes; the line framer that splits the byte stream into
/// bounded lines; and the DATA-phase reader that undoes dot-stuffing and refuses ambiguous
/// line endings (SMTP smuggling). Nothing here performs I/O or keeps session state beyond a
/// single value the caller owns, so every rule can be tested with plain bytes.

/// One SMTP reply: a three-digit code, an optional RFC 3463 enhanced status code, and one
/// or more lines of text.
public struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var enhanced: String?
    public var lines: [String]

    public init(_ code: Int, _ enhanced: String?, _ text: String) {
        self.code = code
        self.enhanced = enhanced
        // "\r\n" is a single Character in Swift: split on it as well as on a bare "\n".
        self.lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map {
            SMTPReply.sanitize(String($0))
        }
        if self.lines.isEmpty { self.lines = [""] }
    }

    public init(code: Int, enhanced: String?, lines: [String]) {
        self.code = code
        self.enhanced = enhanced
        self.lines = lines.isEmpty ? [""] : lines.map(SMTPReply.sanitize)
    }

    /// 2xx/3xx.
    public var isPositive: Bool { code < 400 }
    /// 4xx: the client should try again later.
    public var isTransient: Bool { code >= 400 && code < 500 }
    /// 5xx: the client must not retry as is.
    public var isPermanent: Bool { code >= 500 }

    /// The first line as it goes on the wire, without CRLF (for logs).
    public var description: String { render(line: 0, last: lines.count == 1) }

    /// The whole reply joined into one line of text for logs: `550 5.7.1 Relay denied`.
    public var summary: String {
        let text = lines.joined(separator: " ")
        if let e = enhanced { return "\(code) \(e) \(text)" }
        return "\(code) \(text)"
    }

    private func render(line i: Int, last: Bool) -> String {
        let sep = last ? " " : "-"
        if let e = enhanced { return "\(code)\(sep)\(e) \(lines[i])" }
        return lines[i].isEmpty ? "\(code)\(sep)" : "\(code)\(sep)\(lines[i])"
    }

    /// The reply on the wire: every line ends with CRLF, continuation lines use `NNN-`.
    public var encoded: String {
        var out = ""
        for i in lines.indices {
            out += render(line: i, last: i == lines.count - 1)
            out += "\r\n"
        }
        return out
    }

    /// Reply text must never carry CR, LF or other controls (they would let a reply text
    /// inject protocol lines); replace them with spaces and cap the text at 500 octets (the
    /// reply line stays within RFC 5321's 512), cutting only between characters.
    static func sanitize(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        var octets = 0
        for u in s.unicodeScalars {
            let c: Unicode.Scalar = (u.value < 0x20 || u.value == 0x7f) ? " " : u
            octets += UTF8.width(c)
            if octets > 500 { break }
            out.append(c)
        }
        return String(out)
    }
}

extension SMTPReply {
    public static let ok = SMTPReply(250, "2.0.0", "OK")
    public static func badSequence(_ text: String) -> SMTPReply { SMTPReply(503, "5.5.1", text) }
    public static let lineTooLong = SMTPReply(500, "5.5.2", "Line too long")
    public static let syntaxError = SMTPReply(500, "5.5.2", "Syntax error, command unrecognized")
    public static let notImplemented = SMTPReply(502, "5.5.1", "Command not implemented")
    public static let tooManyErrors = SMTPReply(421, "4.7.0", "Too many errors, closing connection")
    public static let timeout = SMTPReply(421, "4.4.2", "Timeout exceeded, closing connection")
    public static let shuttingDown = SMTPReply(421, "4.3.2", "Service shutting down, try again later")
    public static let bye = SMTPReply(221, "2.0.0", "Bye")
    public static let localError = SMTPReply(451, "4.3.0", "Local error in processing, try again later")
    public static let downstreamUnavailable = SMTPReply(451, "4.4.1", "Downstream server unavailable, try again later")
}
