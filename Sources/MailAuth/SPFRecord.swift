import SMTPProtocol

/// A macro-string of RFC 7208 §7.1, parsed.
public struct MacroString: Sendable, Equatable {
    enum Part: Sendable, Equatable {
        case literal(String)
        case macro(letter: Character, digits: Int?, reverse: Bool, delimiters: [Character], upper: Bool)
    }
    var parts: [Part]

    var usesP: Bool { parts.contains { if case .macro("p", _, _, _, _) = $0 { return true } else { return false } } }
    var endsWithMacro: Bool { if case .macro? = parts.last { return true } else { return false } }
}

enum Qualifier: Character, Sendable {
    case pass = "+", fail = "-", softfail = "~", neutral = "?"
    var result: SPFResult {
        switch self {
        case .pass: return .pass
        case .fail: return .fail
        case .softfail: return .softfail
        case .neutral: return .neutral
        }
    }
}

enum Mechanism: Sendable {
    case all
    case include(MacroString)
    case a(MacroString?, v4: Int, v6: Int)
    case mx(MacroString?, v4: Int, v6: Int)
    case ptr(MacroString?)
    case ip4(IPNetwork)
    case ip6(IPNetwork)
    case exists(MacroString)
}

struct Term: Sendable {
    enum Kind: Sendable {
        case directive(Qualifier, Mechanism)
        case redirect(MacroString)
        case exp(MacroString)
        case unknownModifier
    }
    var kind: Kind
    var text: String
}

extension SPFEvaluator {
    static func syntax(_ s: String) -> Failure { Failure(result: .permerror, problem: "syntax error: \(s)") }

    /// Parses a whole record; any syntax error anywhere is a permerror (RFC 7208 §4.6).
    static func parse(_ record: String) throws -> [Term] {
        guard record.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7f }) else {
            throw syntax("the record has characters outside printable ASCII")
        }
        var terms: [Term] = []
        var sawRedirect = false, sawExp = false
        // "v=spf1" then terms separated by one or more spaces.
        for raw in record.split(separator: " ", omittingEmptySubsequences: true).dropFirst() {
            let t = String(raw)
            let term = try parseTerm(t)
            switch term.kind {
            case .redirect:
                if sawRedirect { throw syntax("redirect= given twice") }
                sawRedirect = true
            case .exp:
                if sawExp { throw syntax("exp= given twice") }
                sawExp = true
            default: break
            }
            terms.append(term)
        }
        return terms
    }

    static func parseTerm(_ t: String) throws -> Term {
        // name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
        var body = Substring(t)
        var qualifier: Qualifier?
        if let f = body.first, let q = Qualifier(rawValue: f) { qualifier = q; body = body.dropFirst() }
        let nameEnd = body.firstIndex { !($0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".")) } ?? body.endIndex
        let name = body[..<nameEnd].lowercased()
        let rest = body[nameEnd...]
        guard let first = name.first, first.isLetter else { throw syntax("'\(t)' is not a mechanism or modifier") }
        if rest.first == "=" {
            guard qualifier == nil else { throw syntax("a modifier takes no qualifier: '\(t)'") }
            let value = String(rest.dropFirst())
            switch name {
            case "redirect": return Term(kind: .redirect(try domainSpec(value, term: t)), text: t)
            case "exp": return Term(kind: .exp(try domainSpec(value, term: t)), text: t)
            default:
                _ = try parseMacroString(value, explain: false)
                return Term(kind: .unknownModifier, text: t)
            }
        }
        let q = qualifier ?? .pass
        func arg() -> String? { rest.first == ":" ? String(rest.dropFirst()) : nil }
        switch name {
        case "all":
            guard rest.isEmpty else { throw syntax("'all' takes no argument: '\(t)'") }
            return Term(kind: .directive(q, .all), text: t)
        case "include", "exists":
            guard let a = arg() else { throw syntax("'\(name)' needs ':domain': '\(t)'") }
            let spec = try domainSpec(a, term: t)
            return Term(kind: .directive(q, name == "include" ? .include(spec) : .exists(spec)), text: t)
        case "a", "mx":
            var spec: MacroString?
            var remainder = String(rest)
            let (v4, v6, stripped) = try dualCIDR(remainder, term: t)
            remainder = stripped
            if !remainder.isEmpty {
                guard remainder.first == ":" else { throw syntax("bad '\(name)' term: '\(t)'") }
                spec = try domainSpec(String(remainder.dropFirst()), term: t)
            }
            return Term(kind: .directive(q, name == "a" ? .a(spec, v4: v4, v6: v6) : .mx(spec, v4: v4, v6: v6)), text: t)
        case "ptr":
            if rest.isEmpty { return Term(kind: .directive(q, .ptr(nil)), text: t) }
            guard let a = arg() else { throw syntax("bad 'ptr' term: '\(t)'") }
            return Term(kind: .directive(q, .ptr(try domainSpec(a, term: t))), text: t)
        case "ip4":
            guard var a = arg() else { throw syntax("'ip4' needs ':address': '\(t)'") }
            var prefix = 32
            if let slash = a.firstIndex(of: "/") {
                prefix = try cidrLength(String(a[a.index(after: slash)...]), max: 32, term: t)
                a = String(a[..<slash])
            }
            guard isDottedQuad(a), let ip = IPAddress(a) else { throw syntax("'\(a)' is not an IPv4 address: '\(t)'") }
            return Term(kind: .directive(q, .ip4(IPNetwork(address: ip, prefix: prefix))), text: t)
        case "ip6":
            guard var a = arg() else { throw syntax("'ip6' needs ':address': '\(t)'") }
            var prefix = 128
            if let slash = a.firstIndex(of: "/") {
                prefix = try cidrLength(String(a[a.index(after: slash)...]), max: 128, term: t)
                a = String(a[..<slash])
            }
            guard a.contains(":"), let ip = IPAddress(a) else { throw syntax("'\(a)' is not an IPv6 address: '\(t)'") }
            // An IPv4-mapped ip6 network stays an IPv6 network of 128 bits.
            if case .v4(let v) = ip {
                return Term(kind: .directive(q, .ip6(IPNetwork(address: .v6(0, 0xffff_0000_0000 | UInt64(v)), prefix: prefix))), text: t)
            }
            return Term(kind: .directive(q, .ip6(IPNetwork(address: ip, prefix: prefix))), text: t)
        default:
            throw syntax("unknown mechanism '\(name)' in '\(t)'")
        }
    }

    static func isDottedQuad(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in
            // ASCII digits only: Character.isNumber is also true for "٣" or "Ⅻ", which Int() refuses.
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), p.count == 1 || p.first != "0",
                  let v = Int(p) else { return false }
            return v <= 255
        }
    }

    /// "0" or a number without leading zeros, at most `max`.
    static func cidrLength(_ s: String, max: Int, term: String) throws -> Int {
        guard !s.isEmpty, s.count <= 3, s.allSatisfy({ $0.isASCII && $0.isNumber }), s == "0" || s.first != "0",
              let n = Int(s), n <= max else { throw syntax("bad prefix length '/\(s)' in '\(term)'") }
        return n
    }

    /// Strips `/n`, `//n` or `/n//m` from the end of an a or mx term.
    static func dualCIDR(_ s: String, term: String) throws -> (Int, Int, String) {
        var rest = s
        var v4 = 32, v6 = 128
        if let r = rest.range(of: "//", options: .backwards), !rest[r.upperBound...].isEmpty, rest[r.upperBound...].allSatisfy(\.isNumber) {
            v6 = try cidrLength(String(rest[r.upperBound...]), max: 128, term: term)
            rest = String(rest[..<r.lowerBound])
        }
        if let slash = rest.lastIndex(of: "/"), !rest[rest.index(after: slash)...].isEmpty, rest[rest.index(after: slash)...].allSatisfy(\.isNumber) {
            v4 = try cidrLength(String(rest[rest.index(after: slash)...]), max: 32, term: term)
            rest = String(rest[..<slash])
        }
        if rest.hasSuffix("/") { throw syntax("bad prefix length in '\(term)'") }
        return (v4, v6, rest)
    }

    /// domain-spec = macro-string domain-end; domain-end = "." toplabel ["."] / macro-expand.
    static func domainSpec(_ s: String, term: String) throws -> MacroString {
        guard !s.isEmpty else { throw syntax("empty domain in '\(term)'") }
        let m = try parseMacroString(s, explain: false)
        if m.endsWithMacro { return m }
        var tail = s
        if tail.hasSuffix(".") { tail.removeLast() }
        guard let dot = tail.lastIndex(of: ".") else { throw syntax("'\(s)' does not end in a top-level label in '\(term)'") }
        let top = tail[tail.index(after: dot)...]
        let alnum = top.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        let ok = !top.isEmpty && alnum && top.first != "-" && top.last != "-"
            && (top.contains(where: \.isLetter) || top.contains("-"))
        guard ok else { throw syntax("'\(top)' is not a valid top-level label in '\(term)'") }
        return m
    }

    /// Parses a macro-string (with spaces too when `explain`).
    static func parseMacroString(_ s: String, explain: Bool) throws -> MacroString {
        var parts: [MacroString.Part] = []
        var lit = ""
        let chars = Array(s)
        var i = 0
        let letters: Set<Character> = explain ? ["s", "l", "o", "d", "i", "p", "h", "v", "c", "r", "t"] : ["s", "l", "o", "d", "i", "p", "h", "v"]
        while i < chars.count {
            let c = chars[i]
            if c != "%" {
                guard c.isASCII, let v = c.asciiValue, (v >= 0x21 && v <= 0x7e) || (explain && v == 0x20) else {
                    throw syntax("character '\(c)' is not allowed in '\(s)'")
                }
                lit.append(c)
                i += 1
                continue
            }
            guard i + 1 < chars.count else { throw syntax("'%' at the end of '\(s)'") }
            switch chars[i + 1] {
            case "%": lit.append("%"); i += 2
            case "_": lit.append(" "); i += 2
            case "-": lit.append("%20"); i += 2
            case "{":
                guard let close = chars[(i + 2)...].firstIndex(of: "}") else { throw syntax("unclosed macro in '\(s)'") }
                let body = chars[(i + 2)..<close]
                guard let letterChar = body.first, letters.contains(Character(letterChar.lowercased())) else {
                    throw syntax("unknown macro '%{\(String(body))}' in '\(s)'")
                }
                var j = body.startIndex + 1
                var digits = ""
                while j < body.endIndex, body[j].isASCII, body[j].isNumber { digits.append(body[j]); j += 1 }
                var reverse = false
                if j < body.endIndex, body[j] == "r" || body[j] == "R" { reverse = true; j += 1 }
                var delims: [Character] = []
                while j < body.endIndex {
                    guard ".-+,/_=".contains(body[j]) else { throw syntax("bad delimiter '\(body[j])' in '%{\(String(body))}'") }
                    delims.append(body[j])
                    j += 1
                }
                var n: Int?
                if !digits.isEmpty {
                    guard digits.count <= 3, let v = Int(digits), v > 0 else { throw syntax("bad digit transformer in '%{\(String(body))}'") }
                    n = v
                }
                if !lit.isEmpty { parts.append(.literal(lit)); lit = "" }
                parts.append(.macro(letter: Character(letterChar.lowercased()), digits: n, reverse: reverse, delimiters: delims,
                                    upper: letterChar.isUppercase))
                i = close + 1
            default:
                throw syntax("'%\(chars[i + 1])' is not a macro in '\(s)'")
            }
        }
        if !lit.isEmpty { parts.append(.literal(lit)) }
        return MacroString(parts: parts)
    }
}
