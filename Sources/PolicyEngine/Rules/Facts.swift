import SMTPProtocol

/// The type of a fact, as the rule compiler checks it.
public indirect enum FactType: Sendable, Equatable, CustomStringConvertible {
    case bool, number, string, ip
    /// A set of strings (e.g. the zones that list the client).
    case set
    /// A fact read with a key: `header("Subject")`, `dkim.pass("example.com")`.
    case keyed(FactType)

    public var description: String {
        switch self {
        case .bool: return "bool"
        case .number: return "number"
        case .string: return "string"
        case .ip: return "ip"
        case .set: return "set of strings"
        case .keyed(let t): return "\(t) by key"
        }
    }

    var zero: FactValue {
        switch self {
        case .bool: return .bool(false)
        case .number: return .number(0)
        case .string: return .string("")
        case .ip: return .ip(nil)
        case .set: return .set([])
        case .keyed: return .keyed([:])
        }
    }
}

/// A fact's value. Strings in sets and keys are compared case-insensitively (stored
/// lower-cased).
public enum FactValue: Sendable, Equatable, CustomStringConvertible {
    case bool(Bool)
    case number(Double)
    case string(String)
    case ip(IPAddress?)
    case set(Set<String>)
    case keyed([String: FactValue])

    public static func strings(_ s: [String]) -> FactValue { .set(Set(s.map { $0.lowercased() })) }

    public var description: String {
        switch self {
        case .bool(let b): return b ? "true" : "false"
        case .number(let d): return FactValue.format(d)
        case .string(let s): return s
        case .ip(let a): return a?.description ?? ""
        case .set(let s): return s.sorted().joined(separator: ",")
        case .keyed(let m): return m.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        }
    }

    /// 2 → "2", 1.5 → "1.5".
    public static func format(_ d: Double) -> String {
        if d == d.rounded() && abs(d) < 1e15 { return String(Int(d)) }
        return String(d)
    }
}

/// A fact that rules may read.
public struct FactDecl: Sendable {
    public var name: String
    public var type: FactType
    /// The first stage at which the fact is known.
    public var stage: Stage
    /// For strings: every value the fact can take, so that a comparison with a typo is
    /// caught as "can never be true". Nil when open-ended.
    public var values: [String]?
    public var doc: String
    public init(_ name: String, _ type: FactType, _ stage: Stage, values: [String]? = nil, _ doc: String) {
        self.name = name
        self.type = type
        self.stage = stage
        self.values = values
        self.doc = doc
    }
}

/// The facts of a session itself, known without any check.
public enum SessionFacts {
    public static let declarations: [FactDecl] = [
        FactDecl("client.ip", .ip, .connect, "the client's address"),
        FactDecl("client.port", .number, .connect, "the client's source port"),
        FactDecl("client.authorized", .bool, .connect, "the client matches the listener's authorizedAddresses"),
        FactDecl("client.ptr", .string, .connect, "the client's verified reverse name; empty when unknown (filled by the DNS checks)"),
        FactDecl("listener", .string, .connect, "the listener's name"),
        FactDecl("tls", .bool, .connect, "the session is encrypted"),
        FactDecl("authenticated", .bool, .connect, "the client has authenticated (AUTH)"),
        FactDecl("auth.user", .string, .connect, "the authenticated user, empty when none"),
        FactDecl("helo.name", .string, .helo, "the HELO/EHLO argument"),
        FactDecl("helo.verb", .string, .helo, values: ["helo", "ehlo"], "HELO or EHLO"),
        FactDecl("helo.literal", .bool, .helo, "the HELO argument is an address literal"),
        FactDecl("helo.fqdn", .bool, .helo, "the HELO argument is a syntactically valid fully qualified name"),
        FactDecl("sender", .string, .mail, "the envelope sender address; empty for the null sender <>"),
        FactDecl("sender.local", .string, .mail, "the local part of the sender"),
        FactDecl("sender.domain", .string, .mail, "the domain of the sender; empty for <>"),
        FactDecl("sender.null", .bool, .mail, "the sender is the null path <> (a bounce)"),
        FactDecl("mail.size", .number, .mail, "the SIZE= declared on MAIL FROM, 0 when none"),
        FactDecl("recipient", .string, .rcpt, "the recipient under consideration"),
        FactDecl("recipient.local", .string, .rcpt, "its local part"),
        FactDecl("recipient.domain", .string, .rcpt, "its domain"),
        FactDecl("recipient.local_domain", .bool, .rcpt, "its domain is one of the gateway's local domains"),
        FactDecl("recipients.count", .number, .rcpt, "recipients accepted so far in the transaction"),
        FactDecl("recipients", .set, .rcpt, "recipients accepted so far"),
        FactDecl("header", .keyed(.string), .data, "the first value of a header field, by name; empty when absent"),
        FactDecl("message.size", .number, .data, "octets of content received (data: the header block; message: all)"),
        FactDecl("score", .number, .connect, "the score so far (session and transaction)"),
    ]

    public static func value(_ name: String, _ c: CheckContext, localDomains: (String) -> Bool) -> FactValue? {
        switch name {
        case "client.ip": return .ip(c.clientIP)
        case "client.port": return .number(Double(c.clientPort))
        case "client.authorized": return .bool(c.clientAuthorized)
        case "client.ptr": return .string(c.clientPTR ?? "")
        case "listener": return .string(c.listener)
        case "tls": return .bool(c.tls)
        case "authenticated": return .bool(c.authenticatedUser != nil)
        case "auth.user": return .string(c.authenticatedUser ?? "")
        case "helo.name": return .string(c.helo ?? "")
        case "helo.verb": return .string(c.heloVerb?.lowercased() ?? "")
        case "helo.literal":
            if let h = c.helo, case .addressLiteral = HeloArgument(h) { return .bool(true) }
            return .bool(false)
        case "helo.fqdn":
            if let h = c.helo, case .fqdn = HeloArgument(h) { return .bool(true) }
            return .bool(false)
        case "sender": return .string(c.sender?.description ?? "")
        case "sender.local": return .string(c.sender?.mailbox?.localPart ?? "")
        case "sender.domain": return .string(c.sender?.mailbox?.domain ?? "")
        case "sender.null": return .bool(c.sender == .null)
        case "mail.size": return .number(Double(c.mailParameters?.size ?? 0))
        case "recipient": return .string(c.recipient?.description ?? "")
        case "recipient.local": return .string(c.recipient?.localPart ?? "")
        case "recipient.domain": return .string(c.recipient?.domain ?? "")
        case "recipient.local_domain": return .bool(c.recipient.map { $0.domain.isEmpty || localDomains($0.domain) } ?? false)
        case "recipients.count": return .number(Double(c.recipients.count))
        case "recipients": return .strings(c.recipients.map(\.description))
        case "header":
            var m: [String: FactValue] = [:]
            for h in c.headers where m[h.name.lowercased()] == nil { m[h.name.lowercased()] = .string(h.value) }
            return .keyed(m)
        case "message.size": return .number(Double(c.messageSize))
        case "score": return .number(c.score)
        default: return nil
        }
    }
}
