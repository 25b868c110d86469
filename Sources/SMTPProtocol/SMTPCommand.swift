/// The reverse-path of MAIL FROM: the null sender `<>` or a mailbox.
public enum ReversePath: Hashable, Sendable, CustomStringConvertible {
    case null
    case mailbox(Mailbox)

    public var description: String {
        switch self {
        case .null: return ""
        case .mailbox(let m): return m.description
        }
    }
    public var mailbox: Mailbox? { if case .mailbox(let m) = self { return m } else { return nil } }
}

/// The ESMTP parameters of MAIL FROM that MailGate implements.
public struct MailParameters: Hashable, Sendable {
    /// RFC 1870 declared size, if given.
    public var size: Int?
    /// RFC 6152 BODY=7BIT / 8BITMIME.
    public var body: String?
    /// RFC 6531 SMTPUTF8.
    public var smtpUTF8 = false
    /// RFC 3461 RET: FULL or HDRS.
    public var ret: String?
    /// RFC 3461 ENVID, xtext as given.
    public var envid: String?
    /// RFC 8689 REQUIRETLS: every hop on from here must be TLS with a verified certificate.
    public var requireTLS = false

    public init() {}

    /// Parameters that need an ESMTP greeting.
    public var needsESMTP: Bool { size != nil || body != nil || smtpUTF8 || ret != nil || envid != nil || requireTLS }
}

/// A parsed command line.
public enum SMTPCommand: Hashable, Sendable {
    case helo(String)
    case ehlo(String)
    /// RFC 2033: LMTP's greeting, in place of HELO and EHLO.
    case lhlo(String)
    case mail(ReversePath, MailParameters)
    case rcpt(Mailbox, RecipientParameters)
    case data
    case rset
    case noop
    case quit
    case vrfy(String)
    case expn(String)
    case help(String)
    case starttls
    case auth(String)
    case bdat(String)

    /// The verb, upper-case, for logs.
    public var verb: String {
        switch self {
        case .helo: return "HELO"
        case .ehlo: return "EHLO"
        case .lhlo: return "LHLO"
        case .mail: return "MAIL"
        case .rcpt: return "RCPT"
        case .data: return "DATA"
        case .rset: return "RSET"
        case .noop: return "NOOP"
        case .quit: return "QUIT"
        case .vrfy: return "VRFY"
        case .expn: return "EXPN"
        case .help: return "HELP"
        case .starttls: return "STARTTLS"
        case .auth: return "AUTH"
        case .bdat: return "BDAT"
        }
    }
}

/// What went wrong with a command line, each with the reply RFC 5321 asks for.
public enum CommandError: Error, Equatable, Sendable {
    /// The verb is not known at all (counts towards the unrecognised-command limit).
    case unrecognized(String)
    /// Known verb, bad arguments.
    case syntax(SMTPReply)

    public var reply: SMTPReply {
        switch self {
        case .unrecognized: return SMTPReply(500, "5.5.2", "Syntax error, command unrecognized")
        case .syntax(let r): return r
        }
    }
}

public struct CommandParserOptions: Sendable {
    /// James' addressBracketsEnforcement: when false, `MAIL FROM:user@x` is accepted.
    public var addressBracketsEnforcement = true
    /// RFC 3461 parameters (RET, ENVID, NOTIFY, ORCPT) are taken: DSN is advertised.
    public var dsn = false
    /// RFC 8689's REQUIRETLS parameter is taken: REQUIRETLS is advertised.
    public var requireTLS = false
    public init(addressBracketsEnforcement: Bool = true, dsn: Bool = false, requireTLS: Bool = false) {
        self.addressBracketsEnforcement = addressBracketsEnforcement
        self.dsn = dsn
        self.requireTLS = requireTLS
    }
}

public enum CommandParser {
    /// Parses one command line (without its CRLF). `transactionUTF8` says whether the
    /// current transaction's MAIL carried SMTPUTF8, which allows UTF-8 in RCPT addresses.
    public static func parse(_ line: String, options: CommandParserOptions = .init(),
                             transactionUTF8: Bool = false) -> Result<SMTPCommand, CommandError> {
        let bytes = line.utf8
        if bytes.contains(0) { return .failure(.syntax(SMTPReply(500, "5.5.2", "Syntax error, NUL in command"))) }
        let verbEnd = line.firstIndex(of: " ") ?? line.endIndex
        let verb = line[line.startIndex..<verbEnd].uppercased()
        var arg = line[verbEnd...]
        if arg.first == " " { arg = arg.dropFirst() }
        let argTrimmed = Substring(String(arg).trimmingSpaces())

        switch verb {
        case "HELO", "EHLO", "LHLO":
            let words = argTrimmed.split(separator: " ")
            guard let name = words.first else {
                return .failure(.syntax(SMTPReply(501, "5.5.4", "Syntax: \(verb) hostname")))
            }
            guard name.utf8.allSatisfy({ $0 > 32 && $0 != 127 }) else {
                return .failure(.syntax(SMTPReply(501, "5.5.4", "Invalid characters in \(verb) argument")))
            }
            switch verb {
            case "HELO": return .success(.helo(String(name)))
            case "EHLO": return .success(.ehlo(String(name)))
            default: return .success(.lhlo(String(name)))
            }
        case "MAIL":
            return parseMail(arg, options: options)
        case "RCPT":
            return parseRcpt(arg, options: options, utf8: transactionUTF8)
        case "DATA", "RSET", "QUIT", "STARTTLS":
            guard argTrimmed.isEmpty else {
                return .failure(.syntax(SMTPReply(501, "5.5.4", "Syntax: \(verb) takes no arguments")))
            }
            switch verb {
            case "DATA": return .success(.data)
            case "RSET": return .success(.rset)
            case "QUIT": return .success(.quit)
            default: return .success(.starttls)
            }
        case "NOOP": return .success(.noop)
        case "VRFY":
            guard !argTrimmed.isEmpty else { return .failure(.syntax(SMTPReply(501, "5.5.4", "Syntax: VRFY address"))) }
            return .success(.vrfy(String(argTrimmed)))
        case "EXPN":
            guard !argTrimmed.isEmpty else { return .failure(.syntax(SMTPReply(501, "5.5.4", "Syntax: EXPN list"))) }
            return .success(.expn(String(argTrimmed)))
        case "HELP": return .success(.help(String(argTrimmed)))
        case "AUTH": return .success(.auth(String(argTrimmed)))
        case "BDAT": return .success(.bdat(String(argTrimmed)))
        default:
            return .failure(.unrecognized(String(verb.prefix(32))))
        }
    }

    /// Accepts `FROM:` / `TO:` followed by optional spaces (common in the wild, harmless).
    private static func stripKeyword(_ arg: Substring, _ keyword: String) -> Substring? {
        guard arg.count >= keyword.count, arg.prefix(keyword.count).uppercased() == keyword else { return nil }
        var rest = arg.dropFirst(keyword.count)
        while rest.first == " " { rest = rest.dropFirst() }
        return rest
    }

    static func parseParameters(_ text: Substring) -> [(String, String?)]? {
        var out: [(String, String?)] = []
        for word in text.split(separator: " ") {
            let kv = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = kv[0]
            guard let f = key.utf8.first, isAlnum(f), key.utf8.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) else { return nil }
            if kv.count == 2 {
                let v = kv[1]
                guard !v.isEmpty, v.utf8.allSatisfy({ ($0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: "=")) || $0 >= 0x80 }) else { return nil }
                out.append((key.uppercased(), String(v)))
            } else {
                out.append((key.uppercased(), nil))
            }
        }
        return out
    }

    private static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a)
    }

    static func parseMail(_ arg: Substring, options: CommandParserOptions) -> Result<SMTPCommand, CommandError> {
        let usage = SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
        guard let rest = stripKeyword(arg, "FROM:") else { return .failure(.syntax(usage)) }
        guard let split = AddressParser.splitPath(rest, bracketsRequired: options.addressBracketsEnforcement) else {
            return .failure(.syntax(SMTPReply(501, "5.1.7", "Bad sender address syntax")))
        }
        guard let params = parseParameters(split.rest) else {
            return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad MAIL parameter syntax")))
        }
        var mp = MailParameters()
        for (k, v) in params {
            switch k {
            case "SIZE":
                guard let v, v.count <= 18, let n = Int(v), n >= 0 else {
                    return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad SIZE parameter")))
                }
                mp.size = n
            case "BODY":
                guard let v, ["7BIT", "8BITMIME"].contains(v.uppercased()) else {
                    return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad BODY parameter (7BIT or 8BITMIME)")))
                }
                mp.body = v.uppercased()
            case "SMTPUTF8":
                guard v == nil else { return .failure(.syntax(SMTPReply(501, "5.5.4", "SMTPUTF8 takes no value"))) }
                mp.smtpUTF8 = true
            case "RET" where options.dsn:
                guard let v, ["FULL", "HDRS"].contains(v.uppercased()), mp.ret == nil else {
                    return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad RET parameter (FULL or HDRS)")))
                }
                mp.ret = v.uppercased()
            case "ENVID" where options.dsn:
                guard let v, DSNSyntax.isXtext(v.utf8, maxOctets: 100), mp.envid == nil else {
                    return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad ENVID parameter")))
                }
                mp.envid = String(v)
            case "REQUIRETLS" where options.requireTLS:
                guard v == nil, !mp.requireTLS else { return .failure(.syntax(SMTPReply(501, "5.5.4", "REQUIRETLS takes no value"))) }
                mp.requireTLS = true
            default:
                return .failure(.syntax(SMTPReply(555, "5.5.4", "Unsupported MAIL parameter \(k.prefix(32))")))
            }
        }
        if split.path.isEmpty {
            guard split.bracketed else { return .failure(.syntax(SMTPReply(501, "5.1.7", "Bad sender address syntax"))) }
            return .success(.mail(.null, mp))
        }
        do {
            let m = try AddressParser.parseMailbox(split.path, allowUTF8: mp.smtpUTF8)
            return .success(.mail(.mailbox(m), mp))
        } catch {
            return .failure(.syntax(addressReply(error, sender: true)))
        }
    }

    static func parseRcpt(_ arg: Substring, options: CommandParserOptions, utf8: Bool) -> Result<SMTPCommand, CommandError> {
        let usage = SMTPReply(501, "5.5.4", "Syntax: RCPT TO:<address>")
        guard let rest = stripKeyword(arg, "TO:") else { return .failure(.syntax(usage)) }
        guard let split = AddressParser.splitPath(rest, bracketsRequired: options.addressBracketsEnforcement),
              !split.path.isEmpty else {
            return .failure(.syntax(SMTPReply(501, "5.1.3", "Bad recipient address syntax")))
        }
        guard let params = parseParameters(split.rest) else {
            return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad RCPT parameter syntax")))
        }
        var rp = RecipientParameters()
        for (k, v) in params {
            switch k {
            case "NOTIFY" where options.dsn:
                guard let v, let n = DSNSyntax.notify(Substring(v)), rp.notify == nil else {
                    return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad NOTIFY parameter (NEVER, or SUCCESS,FAILURE,DELAY)")))
                }
                rp.notify = n
            case "ORCPT" where options.dsn:
                guard let v, DSNSyntax.isORCPT(Substring(v)), rp.orcpt == nil else {
                    return .failure(.syntax(SMTPReply(501, "5.5.4", "Bad ORCPT parameter")))
                }
                rp.orcpt = String(v)
            default:
                return .failure(.syntax(SMTPReply(555, "5.5.4", "Unsupported RCPT parameter \(k.prefix(32))")))
            }
        }
        // RFC 5321 §4.1.1.3: <Postmaster> without a domain must be accepted.
        if split.path.lowercased() == "postmaster" {
            return .success(.rcpt(Mailbox(localPart: String(split.path), domain: ""), rp))
        }
        do {
            return .success(.rcpt(try AddressParser.parseMailbox(split.path, allowUTF8: utf8), rp))
        } catch {
            return .failure(.syntax(addressReply(error, sender: false)))
        }
    }

    static func addressReply(_ e: AddressError, sender: Bool) -> SMTPReply {
        switch e {
        case .needsSMTPUTF8:
            return SMTPReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
        case .tooLong(let why):
            return SMTPReply(501, sender ? "5.1.7" : "5.1.3", "Address too long: \(why)")
        case .syntax(let why):
            return SMTPReply(501, sender ? "5.1.7" : "5.1.3", "Bad \(sender ? "sender" : "recipient") address syntax: \(why)")
        }
    }
}
