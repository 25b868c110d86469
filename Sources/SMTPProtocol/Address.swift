/// A mailbox `local@domain` (RFC 5321 §4.1.2, RFC 6531 for UTF-8). The local part keeps its
/// quoting as the client sent it; the domain is kept as sent (case preserved) and compared
/// case-insensitively through `domainKey`.
public struct Mailbox: Hashable, Sendable, CustomStringConvertible {
    public let localPart: String
    public let domain: String

    public init(localPart: String, domain: String) {
        self.localPart = localPart
        self.domain = domain
    }

    public var description: String { domain.isEmpty ? localPart : "\(localPart)@\(domain)" }
    /// Lower-cased domain without a trailing dot, for matching local domains.
    public var domainKey: String {
        var d = domain.lowercased()
        if d.hasSuffix(".") { d.removeLast() }
        return d
    }
    public var isASCII: Bool { description.utf8.allSatisfy { $0 < 0x80 } }

    /// The first routing character in the local part, read without its quoting: `%`
    /// (`user%remote@local`), `!` (`remote!user@local`) or `@` (`"user@remote"@local`). A
    /// downstream with Postfix's default `allow_percent_hack` or `swap_bangpath` would relay
    /// such an address.
    public var routingCharacter: Character? {
        var escaped = false
        for c in localPart {
            if escaped { escaped = false; if "%!@".contains(c) { return c }; continue }
            if c == "\\" { escaped = true; continue }
            if "%!@".contains(c) { return c }
        }
        return nil
    }

    /// The same mailbox with the domain's trailing dot removed (`user@local.`), as it is
    /// compared and forwarded.
    public var withoutTrailingDot: Mailbox {
        var d = domain
        while d.hasSuffix(".") { d.removeLast() }
        return d == domain ? self : Mailbox(localPart: localPart, domain: d)
    }
}

/// Why an address was refused; the session turns each into its RFC reply.
public enum AddressError: Error, Equatable, Sendable {
    case syntax(String)
    case tooLong(String)
    case needsSMTPUTF8
}

public enum AddressParser {
    public static let maxLocalPart = 64
    public static let maxDomain = 255
    public static let maxPath = 256

    /// Splits `<path> params` (or `path params` when brackets are not enforced) into the
    /// path's inner text and the parameter text. Quoted strings may contain `>` and spaces.
    public static func splitPath(_ s: Substring, bracketsRequired: Bool) -> (path: Substring, bracketed: Bool, rest: Substring)? {
        guard let first = s.first else { return nil }
        if first == "<" {
            var inQuote = false
            var escaped = false
            var i = s.index(after: s.startIndex)
            while i < s.endIndex {
                let c = s[i]
                if escaped { escaped = false }
                else if c == "\\" && inQuote { escaped = true }
                else if c == "\"" { inQuote.toggle() }
                else if c == ">" && !inQuote {
                    let path = s[s.index(after: s.startIndex)..<i]
                    let rest = s[s.index(after: i)...]
                    // Parameters must be separated from the path by a space.
                    if let r = rest.first, r != " " { return nil }
                    return (path, true, rest)
                }
                i = s.index(after: i)
            }
            return nil
        }
        if bracketsRequired { return nil }
        let end = s.firstIndex(of: " ") ?? s.endIndex
        return (s[s.startIndex..<end], false, s[end...])
    }

    /// Parses the inside of a path: optional source route (accepted and dropped, RFC 5321
    /// §4.1.2 and Appendix C) and a mailbox.
    public static func parseMailbox(_ text: Substring, allowUTF8: Bool) throws(AddressError) -> Mailbox {
        var s = text
        if s.utf8.count > maxPath - 2 { throw .tooLong("path longer than \(maxPath) octets") }
        if s.first == "@" {
            guard let colon = s.firstIndex(of: ":") else { throw .syntax("bad source route") }
            for hop in s[s.startIndex..<colon].split(separator: ",", omittingEmptySubsequences: false) {
                guard hop.first == "@", isDomain(hop.dropFirst(), allowUTF8: true) else {
                    throw .syntax("bad source route")
                }
            }
            s = s[s.index(after: colon)...]
        }
        // The local part ends at the last '@' outside quotes.
        var at: Substring.Index?
        var inQuote = false, escaped = false
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if escaped { escaped = false }
            else if c == "\\" && inQuote { escaped = true }
            else if c == "\"" { inQuote.toggle() }
            else if c == "@" && !inQuote { at = i }
            i = s.index(after: i)
        }
        guard let atIndex = at else { throw .syntax("address must be local-part@domain") }
        let local = s[s.startIndex..<atIndex]
        let domain = s[s.index(after: atIndex)...]
        let hasNonASCII = s.utf8.contains { $0 >= 0x80 }
        if hasNonASCII && !allowUTF8 { throw .needsSMTPUTF8 }
        guard isLocalPart(local, allowUTF8: allowUTF8) else { throw .syntax("bad local part") }
        if local.utf8.count > maxLocalPart { throw .tooLong("local part longer than \(maxLocalPart) octets") }
        guard isDomain(domain, allowUTF8: allowUTF8) || isAddressLiteral(domain) else {
            throw .syntax("bad domain")
        }
        if domain.utf8.count > maxDomain { throw .tooLong("domain longer than \(maxDomain) octets") }
        return Mailbox(localPart: String(local), domain: String(domain))
    }

    static func isAtext(_ b: UInt8, allowUTF8: Bool) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"),
             UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
             UInt8(ascii: "-"), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "?"),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "{"),
             UInt8(ascii: "|"), UInt8(ascii: "}"), UInt8(ascii: "~"):
            return true
        default:
            return allowUTF8 && b >= 0x80
        }
    }

    /// Dot-string or Quoted-string (RFC 5321 §4.1.2), UTF-8 allowed with SMTPUTF8.
    public static func isLocalPart(_ s: Substring, allowUTF8: Bool) -> Bool {
        let u = Array(s.utf8)
        guard !u.isEmpty else { return false }
        if u.first == UInt8(ascii: "\"") {
            guard u.count >= 2, u.last == UInt8(ascii: "\"") else { return false }
            var i = 1
            while i < u.count - 1 {
                let b = u[i]
                if b == UInt8(ascii: "\\") {
                    guard i + 1 < u.count - 1, (32...126).contains(u[i + 1]) else { return false }
                    i += 2
                    continue
                }
                let ok = b == 32 || b == 33 || (35...91).contains(b) || (93...126).contains(b) || (allowUTF8 && b >= 0x80)
                guard ok else { return false }
                i += 1
            }
            return true
        }
        var prevDot = true
        for b in u {
            if b == UInt8(ascii: ".") {
                if prevDot { return false }
                prevDot = true
            } else {
                guard isAtext(b, allowUTF8: allowUTF8) else { return false }
                prevDot = false
            }
        }
        return !prevDot
    }

    /// Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]; labels of at
    /// most 63 octets. With SMTPUTF8, U-labels (non-ASCII) are allowed. A trailing dot is
    /// tolerated (it is common in the wild and harmless).
    public static func isDomain(_ s: Substring, allowUTF8: Bool) -> Bool {
        var d = s
        if d.last == "." { d = d.dropLast() }
        guard !d.isEmpty, d.utf8.count <= maxDomain else { return false }
        for label in d.split(separator: ".", omittingEmptySubsequences: false) {
            let u = Array(label.utf8)
            guard !u.isEmpty, u.count <= 63 else { return false }
            func letDig(_ b: UInt8) -> Bool {
                (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a) || (allowUTF8 && b >= 0x80)
            }
            guard letDig(u.first!), letDig(u.last!) else { return false }
            for b in u where !(letDig(b) || b == UInt8(ascii: "-")) { return false }
        }
        return true
    }

    /// `[1.2.3.4]`, `[IPv6:…]` or a general address literal `[tag:content]`.
    public static func isAddressLiteral(_ s: Substring) -> Bool {
        guard case .some = parseAddressLiteral(s) else {
            return isGeneralAddressLiteral(s)
        }
        return true
    }

    /// The address inside `[1.2.3.4]` or `[IPv6:2001:db8::1]`, or nil.
    public static func parseAddressLiteral(_ s: Substring) -> IPAddress? {
        guard s.first == "[", s.last == "]", s.count > 2 else { return nil }
        let inner = s.dropFirst().dropLast()
        if inner.lowercased().hasPrefix("ipv6:") {
            let a = inner.dropFirst(5)
            guard a.contains(":"), let ip = IPAddress(a), !ip.isIPv4 || a.lowercased().hasPrefix("::ffff:") else { return nil }
            return ip
        }
        // IPv4 literal: exactly four decimal octets.
        let parts = inner.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && UInt8($0) != nil }) else { return nil }
        return IPAddress(inner)
    }

    static func isGeneralAddressLiteral(_ s: Substring) -> Bool {
        guard s.first == "[", s.last == "]" else { return false }
        let inner = s.dropFirst().dropLast()
        guard let colon = inner.firstIndex(of: ":") else { return false }
        let tag = inner[inner.startIndex..<colon]
        let content = inner[inner.index(after: colon)...]
        guard isDomain(tag, allowUTF8: false), !content.isEmpty else { return false }
        return content.utf8.allSatisfy { (33...90).contains($0) || (94...126).contains($0) }
    }
}
