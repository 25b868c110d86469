/// The rules language: tokens, syntax tree and parser.
///
/// A rule file holds list declarations and rules:
///
///     list trusted = ip "lists/trusted-networks.txt"
///
///     rule "trusted-networks" at connect
///       when client.ip in trusted
///       accept
///
///     rule "listed" at connect defer monitor
///       when dnsbl.listed("zen.example")
///       reject 554 5.7.1 "Service unavailable; client [{client.ip}] blocked"
///
/// Every token keeps its line and column, so that every error names its place.

/// A place in a source file, 1-based.
public struct SourcePosition: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) { self.line = line; self.column = column }
    public var description: String { "\(line):\(column)" }
    public static func < (a: SourcePosition, b: SourcePosition) -> Bool { (a.line, a.column) < (b.line, b.column) }
}

/// A problem found in a policy, at a place in one of its files.
public struct PolicyDiagnostic: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var position: SourcePosition?
    public var message: String
    public init(file: String, _ position: SourcePosition?, _ message: String) {
        self.file = file
        self.position = position
        self.message = message
    }
    public var description: String {
        if let p = position { return "\(file):\(p.line):\(p.column): \(message)" }
        return "\(file): \(message)"
    }
}

/// The diagnostics of a policy that failed to compile.
public struct PolicyErrors: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [PolicyDiagnostic]
    public init(_ d: [PolicyDiagnostic]) { diagnostics = d }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

enum TokenKind: Equatable, Sendable {
    case ident(String)      // letters, digits, _ and - ; keywords too
    case string(String)     // "…" with \" \\ \n escapes
    case number(String)     // 12, 1.5, 5.7.1, +2, -0.5
    case punct(String)      // ( ) [ ] , . = == != < <= > >=
    case end
}

struct Token: Sendable {
    var kind: TokenKind
    var pos: SourcePosition
}

struct Lexer {
    let file: String
    private let chars: [Unicode.Scalar]
    private var i = 0
    private var line = 1
    private var col = 1
    /// Problems found while reading tokens; the lexer carries on after each.
    var diagnostics: [PolicyDiagnostic] = []

    init(_ text: String, file: String) {
        self.file = file
        self.chars = Array(text.unicodeScalars)
    }

    private func peek(_ k: Int = 0) -> Unicode.Scalar? { i + k < chars.count ? chars[i + k] : nil }

    private mutating func advance() {
        if chars[i] == "\n" { line += 1; col = 1 } else { col += 1 }
        i += 1
    }

    static func isIdentStart(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_"
    }
    static func isIdentChar(_ c: Unicode.Scalar) -> Bool {
        isIdentStart(c) || isDigit(c) || c == "-"
    }
    static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }

    mutating func tokens() -> [Token] {
        var out: [Token] = []
        while true {
            // Blanks and comments.
            while let c = peek() {
                if c == " " || c == "\t" || c == "\r" || c == "\n" { advance(); continue }
                if c == "#" { while let d = peek(), d != "\n" { advance() }; continue }
                break
            }
            let pos = SourcePosition(line: line, column: col)
            guard let c = peek() else {
                out.append(Token(kind: .end, pos: pos))
                return out
            }
            if Lexer.isIdentStart(c) {
                var s = ""
                while let d = peek(), Lexer.isIdentChar(d) { s.unicodeScalars.append(d); advance() }
                out.append(Token(kind: .ident(s), pos: pos))
            } else if Lexer.isDigit(c) || ((c == "+" || c == "-") && peek(1).map(Lexer.isDigit) == true) {
                var s = ""
                s.unicodeScalars.append(c)
                advance()
                while let d = peek(), Lexer.isDigit(d) || (d == "." && peek(1).map(Lexer.isDigit) == true) {
                    s.unicodeScalars.append(d)
                    advance()
                }
                if let d = peek(), Lexer.isIdentStart(d) {
                    diagnostics.append(PolicyDiagnostic(file: file, SourcePosition(line: line, column: col), "unexpected '\(d)' after number \(s)"))
                }
                out.append(Token(kind: .number(s), pos: pos))
            } else if c == "\"" {
                advance()
                var s = ""
                while true {
                    guard let d = peek(), d != "\n" else {
                        diagnostics.append(PolicyDiagnostic(file: file, pos, "unterminated string"))
                        break
                    }
                    advance()
                    if d == "\"" { break }
                    if d == "\\" {
                        guard let e = peek(), e != "\n" else { continue }
                        advance()
                        switch e {
                        case "\"", "\\": s.unicodeScalars.append(e)
                        case "n": s.unicodeScalars.append("\n")
                        default:
                            diagnostics.append(PolicyDiagnostic(file: file, SourcePosition(line: line, column: col - 2), "unknown escape \\\(e) (use \\\" \\\\ or \\n)"))
                        }
                        continue
                    }
                    if d.value < 0x20 || d.value == 0x7f {
                        diagnostics.append(PolicyDiagnostic(file: file, SourcePosition(line: line, column: col - 1), "control character in string"))
                        continue
                    }
                    s.unicodeScalars.append(d)
                }
                out.append(Token(kind: .string(s), pos: pos))
            } else {
                let two = peek(1).map { String(c) + String($0) }
                if let t = two, ["==", "!=", "<=", ">="].contains(t) {
                    advance(); advance()
                    out.append(Token(kind: .punct(t), pos: pos))
                } else if "()[],.=<>".unicodeScalars.contains(c) {
                    advance()
                    out.append(Token(kind: .punct(String(c)), pos: pos))
                } else {
                    diagnostics.append(PolicyDiagnostic(file: file, pos, "unexpected character '\(c)'"))
                    advance()
                }
            }
        }
    }
}

// MARK: Syntax tree

indirect enum Expr: Sendable {
    case bool(Bool, SourcePosition)
    case number(Double, SourcePosition)
    case string(String, SourcePosition)
    case list([Expr], SourcePosition)
    /// A dotted name: a fact or a list.
    case path(String, SourcePosition)
    /// `name(arg)`: a fact with a key.
    case call(String, Expr, SourcePosition)
    case not(Expr, SourcePosition)
    case and(Expr, Expr)
    case or(Expr, Expr)
    /// ==, !=, <, <=, >, >=, in, matches, contains
    case binary(String, Expr, Expr, SourcePosition)

    var pos: SourcePosition {
        switch self {
        case .bool(_, let p), .number(_, let p), .string(_, let p), .list(_, let p), .path(_, let p),
             .call(_, _, let p), .not(_, let p), .binary(_, _, _, let p): return p
        case .and(let a, _), .or(let a, _): return a.pos
        }
    }
}

struct ReplySyntax: Sendable {
    var code: Int?
    var enhanced: String?
    var text: String?
    var pos: SourcePosition
    var textPos: SourcePosition?
}

enum ActionSyntax: Sendable {
    case accept(SourcePosition)
    case reject(ReplySyntax)
    case tempfail(ReplySyntax)
    case greylist(SourcePosition)
    case score(Double, SourcePosition)
    case header(String, String, SourcePosition, valuePos: SourcePosition)
    case log(String?, SourcePosition)

    var pos: SourcePosition {
        switch self {
        case .accept(let p), .greylist(let p), .score(_, let p), .header(_, _, let p, _), .log(_, let p): return p
        case .reject(let r), .tempfail(let r): return r.pos
        }
    }
    var isTerminal: Bool {
        switch self {
        case .accept, .reject, .tempfail, .greylist: return true
        default: return false
        }
    }
}

struct RuleSyntax: Sendable {
    var name: String
    var pos: SourcePosition
    var stage: String
    var stagePos: SourcePosition
    var monitor: Bool
    var deferTo: String?
    var deferPos: SourcePosition?
    var condition: Expr?
    var actions: [ActionSyntax]
}

struct ListSyntax: Sendable {
    var name: String
    var kind: String
    var kindPos: SourcePosition
    var path: String
    var pathPos: SourcePosition
    var pos: SourcePosition
}

struct RuleFileSyntax: Sendable {
    var lists: [ListSyntax] = []
    var rules: [RuleSyntax] = []
}

// MARK: Parser

struct Parser {
    let file: String
    var toks: [Token]
    var i = 0
    var diagnostics: [PolicyDiagnostic] = []

    static let keywords: Set<String> = ["rule", "list", "at", "when", "and", "or", "not", "in", "matches", "contains",
                                        "true", "false", "monitor", "defer", "accept", "reject", "tempfail", "greylist",
                                        "score", "header", "log"]
    /// Action words that are also facts (`score`, `header("From")`): in a condition they
    /// are facts.
    static let factWords: Set<String> = ["score", "header"]
    static let actionWords: Set<String> = ["accept", "reject", "tempfail", "greylist", "score", "header", "log"]

    init(_ text: String, file: String) {
        self.file = file
        var lx = Lexer(text, file: file)
        self.toks = lx.tokens()
        self.diagnostics = lx.diagnostics
    }

    var tok: Token { toks[i] }
    mutating func next() -> Token { let t = toks[i]; if i < toks.count - 1 { i += 1 }; return t }

    func err(_ pos: SourcePosition, _ msg: String) -> PolicyDiagnostic { PolicyDiagnostic(file: file, pos, msg) }

    func describe(_ t: Token) -> String {
        switch t.kind {
        case .ident(let s): return "'\(s)'"
        case .string(let s): return "string \"\(s.prefix(40))\""
        case .number(let s): return "number \(s)"
        case .punct(let s): return "'\(s)'"
        case .end: return "end of file"
        }
    }

    func isWord(_ w: String) -> Bool { if case .ident(w) = tok.kind { return true } else { return false } }
    func isPunct(_ p: String) -> Bool { if case .punct(p) = tok.kind { return true } else { return false } }

    mutating func expectWord(_ w: String) throws(PolicyDiagnostic) {
        guard isWord(w) else { throw err(tok.pos, "expected '\(w)', found \(describe(tok))") }
        _ = next()
    }
    mutating func expectPunct(_ p: String) throws(PolicyDiagnostic) {
        guard isPunct(p) else { throw err(tok.pos, "expected '\(p)', found \(describe(tok))") }
        _ = next()
    }
    mutating func expectString(_ what: String) throws(PolicyDiagnostic) -> (String, SourcePosition) {
        guard case .string(let s) = tok.kind else { throw err(tok.pos, "expected \(what) (a quoted string), found \(describe(tok))") }
        let p = tok.pos
        _ = next()
        return (s, p)
    }
    mutating func expectName(_ what: String) throws(PolicyDiagnostic) -> (String, SourcePosition) {
        let p = tok.pos
        switch tok.kind {
        case .ident(let s) where !Parser.keywords.contains(s):
            _ = next(); return (s, p)
        case .string(let s):
            _ = next(); return (s, p)
        default:
            throw err(p, "expected \(what), found \(describe(tok))")
        }
    }

    /// Parses the whole file, recovering at the next `rule` or `list` after an error so that
    /// one run reports every broken rule.
    mutating func parseFile() -> RuleFileSyntax {
        var f = RuleFileSyntax()
        while true {
            if case .end = tok.kind { return f }
            do throws(PolicyDiagnostic) {
                if isWord("rule") {
                    f.rules.append(try parseRule())
                } else if isWord("list") {
                    f.lists.append(try parseList())
                } else {
                    throw err(tok.pos, "expected 'rule' or 'list', found \(describe(tok))")
                }
            } catch {
                diagnostics.append(error)
                // Skip to the next top-level keyword.
                _ = next()
                while !isWord("rule") && !isWord("list") {
                    if case .end = tok.kind { break }
                    _ = next()
                }
            }
        }
    }

    mutating func parseList() throws(PolicyDiagnostic) -> ListSyntax {
        let pos = tok.pos
        try expectWord("list")
        let (name, _) = try expectName("a list name")
        try expectPunct("=")
        guard case .ident(let kind) = tok.kind else { throw err(tok.pos, "expected a list type (ip, domain, string, pattern), found \(describe(tok))") }
        let kindPos = tok.pos
        _ = next()
        let (path, pathPos) = try expectString("the list file")
        return ListSyntax(name: name, kind: kind, kindPos: kindPos, path: path, pathPos: pathPos, pos: pos)
    }

    mutating func parseRule() throws(PolicyDiagnostic) -> RuleSyntax {
        let pos = tok.pos
        try expectWord("rule")
        let (name, _) = try expectName("a rule name")
        try expectWord("at")
        guard case .ident(let stage) = tok.kind else { throw err(tok.pos, "expected a stage (connect, helo, mail, rcpt, data, message), found \(describe(tok))") }
        let stagePos = tok.pos
        _ = next()
        var r = RuleSyntax(name: name, pos: pos, stage: stage, stagePos: stagePos, monitor: false, deferTo: nil, condition: nil, actions: [])
        while true {
            if isWord("monitor") {
                _ = next()
                r.monitor = true
            } else if isWord("defer") {
                r.deferPos = tok.pos
                _ = next()
                r.deferTo = "rcpt"
                if isWord("rcpt") || isWord("data") {
                    if case .ident(let s) = next().kind { r.deferTo = s }
                }
            } else {
                break
            }
        }
        if isWord("when") {
            _ = next()
            r.condition = try parseOr()
        }
        while case .ident(let w) = tok.kind, Parser.actionWords.contains(w) {
            r.actions.append(try parseAction())
        }
        if r.actions.isEmpty {
            throw err(tok.pos, "expected an action (accept, reject, tempfail, greylist, score, header, log) for rule \"\(name)\", found \(describe(tok))")
        }
        return r
    }

    mutating func parseAction() throws(PolicyDiagnostic) -> ActionSyntax {
        let t = next()
        guard case .ident(let w) = t.kind else { throw err(t.pos, "expected an action") }
        switch w {
        case "accept": return .accept(t.pos)
        case "greylist": return .greylist(t.pos)
        case "reject", "tempfail":
            var r = ReplySyntax(pos: t.pos)
            if case .number(let n) = tok.kind {
                let np = tok.pos
                _ = next()
                guard let code = Int(n), code >= 400, code <= 599 else { throw err(np, "reply code must be 4xx or 5xx, found \(n)") }
                r.code = code
                if case .number(let e) = tok.kind {
                    let ep = tok.pos
                    _ = next()
                    let parts = e.split(separator: ".", omittingEmptySubsequences: false)
                    guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }), ["2", "4", "5"].contains(parts[0]) else {
                        throw err(ep, "enhanced status code must look like 5.7.1, found \(e)")
                    }
                    r.enhanced = e
                }
            }
            if case .string(let s) = tok.kind {
                r.textPos = tok.pos
                r.text = s
                _ = next()
            }
            return w == "reject" ? .reject(r) : .tempfail(r)
        case "score":
            guard case .number(let n) = tok.kind, let v = Double(n) else { throw err(tok.pos, "expected a number after 'score' (e.g. +2 or -1.5), found \(describe(tok))") }
            _ = next()
            return .score(v, t.pos)
        case "header":
            let (name, np) = try expectString("a header field name")
            let (value, vp) = try expectString("a header field value")
            if name.isEmpty || !name.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 && $0 != ":" }) {
                throw err(np, "'\(name)' is not a valid header field name")
            }
            return .header(name, value, t.pos, valuePos: vp)
        case "log":
            if case .string(let s) = tok.kind { _ = next(); return .log(s, t.pos) }
            return .log(nil, t.pos)
        default:
            throw err(t.pos, "unknown action '\(w)'")
        }
    }

    mutating func parseOr() throws(PolicyDiagnostic) -> Expr {
        var e = try parseAnd()
        while isWord("or") { _ = next(); e = .or(e, try parseAnd()) }
        return e
    }
    mutating func parseAnd() throws(PolicyDiagnostic) -> Expr {
        var e = try parseNot()
        while isWord("and") { _ = next(); e = .and(e, try parseNot()) }
        return e
    }
    mutating func parseNot() throws(PolicyDiagnostic) -> Expr {
        if isWord("not") {
            let p = next().pos
            return .not(try parseNot(), p)
        }
        return try parseComparison()
    }
    mutating func parseComparison() throws(PolicyDiagnostic) -> Expr {
        let lhs = try parsePrimary()
        let p = tok.pos
        switch tok.kind {
        case .punct(let op) where ["==", "!=", "<", "<=", ">", ">="].contains(op):
            _ = next()
            return .binary(op, lhs, try parsePrimary(), p)
        case .punct("="):
            throw err(p, "'=' is not a comparison; use '=='")
        case .ident(let w) where w == "in" || w == "matches" || w == "contains":
            _ = next()
            return .binary(w, lhs, try parsePrimary(), p)
        case .ident("not"):
            // `x not in list`
            if case .ident("in") = toks[min(i + 1, toks.count - 1)].kind {
                _ = next(); _ = next()
                return .not(.binary("in", lhs, try parsePrimary(), p), p)
            }
            return lhs
        default:
            return lhs
        }
    }
    mutating func parsePrimary() throws(PolicyDiagnostic) -> Expr {
        let t = tok
        switch t.kind {
        case .number(let n):
            _ = next()
            guard let v = Double(n) else { throw err(t.pos, "'\(n)' is not a number") }
            return .number(v, t.pos)
        case .string(let s):
            _ = next()
            return .string(s, t.pos)
        case .punct("("):
            _ = next()
            let e = try parseOr()
            try expectPunct(")")
            return e
        case .punct("["):
            _ = next()
            var items: [Expr] = []
            if !isPunct("]") {
                items.append(try parsePrimary())
                while isPunct(",") { _ = next(); items.append(try parsePrimary()) }
            }
            try expectPunct("]")
            return .list(items, t.pos)
        case .ident("true"): _ = next(); return .bool(true, t.pos)
        case .ident("false"): _ = next(); return .bool(false, t.pos)
        case .ident(let w) where !Parser.keywords.contains(w) || Parser.factWords.contains(w):
            _ = next()
            var name = w
            while isPunct(".") {
                _ = next()
                guard case .ident(let part) = tok.kind else { throw err(tok.pos, "expected a name after '.', found \(describe(tok))") }
                _ = next()
                name += "." + part
            }
            if isPunct("(") {
                _ = next()
                let arg = try parseOr()
                try expectPunct(")")
                return .call(name, arg, t.pos)
            }
            return .path(name, t.pos)
        default:
            throw err(t.pos, "expected a value, a fact or '(', found \(describe(t))")
        }
    }
}
