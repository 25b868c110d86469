import Foundation
import SMTPProtocol

// MARK: Compiled forms

/// A `*`/`?`/`[a-z]` pattern, matched case-insensitively over the whole string in
/// O(pattern × text) time: no backtracking blow-up on hostile names.
public struct Glob: Sendable, Equatable {
    enum Piece: Sendable, Equatable { case char(UInt8), any, star, set([ClosedRange<UInt8>], negated: Bool) }
    let pieces: [Piece]
    public let source: String

    /// Nil with a reason when the pattern is malformed.
    public static func parse(_ s: String) -> Result<Glob, PolicyCompileMessage> {
        var pieces: [Piece] = []
        let b = Array(s.lowercased().utf8)
        var i = 0
        while i < b.count {
            let c = b[i]
            switch c {
            case UInt8(ascii: "*"): if pieces.last != .star { pieces.append(.star) }
            case UInt8(ascii: "?"): pieces.append(.any)
            case UInt8(ascii: "["):
                var j = i + 1
                var negated = false
                if j < b.count && b[j] == UInt8(ascii: "!") { negated = true; j += 1 }
                var ranges: [ClosedRange<UInt8>] = []
                while j < b.count && b[j] != UInt8(ascii: "]") {
                    if j + 2 < b.count && b[j + 1] == UInt8(ascii: "-") && b[j + 2] != UInt8(ascii: "]") {
                        guard b[j] <= b[j + 2] else { return .failure(PolicyCompileMessage("bad range in pattern '\(s)'")) }
                        ranges.append(b[j]...b[j + 2]); j += 3
                    } else {
                        ranges.append(b[j]...b[j]); j += 1
                    }
                }
                guard j < b.count, !ranges.isEmpty else { return .failure(PolicyCompileMessage("unclosed or empty [ ] in pattern '\(s)'")) }
                pieces.append(.set(ranges, negated: negated))
                i = j
            default: pieces.append(.char(c))
            }
            i += 1
        }
        return .success(Glob(pieces: pieces, source: s))
    }

    public func matches(_ text: String) -> Bool {
        let t = Array(text.lowercased().utf8)
        // Dynamic programming over pattern positions: reachable[k] = pattern prefix k matches.
        var reach = [Bool](repeating: false, count: pieces.count + 1)
        reach[0] = true
        for k in 0..<pieces.count where pieces[k] == .star && reach[k] { reach[k + 1] = true }
        for ch in t {
            var next = [Bool](repeating: false, count: pieces.count + 1)
            for k in 0..<pieces.count where reach[k] {
                switch pieces[k] {
                case .star: next[k] = true
                case .any: next[k + 1] = true
                case .char(let c): if c == ch { next[k + 1] = true }
                case .set(let ranges, let neg): if ranges.contains(where: { $0.contains(ch) }) != neg { next[k + 1] = true }
                }
            }
            for k in 0..<pieces.count where pieces[k] == .star && next[k] { next[k + 1] = true }
            reach = next
            if !reach.contains(true) { return false }
        }
        return reach[pieces.count]
    }
}

public struct PolicyCompileMessage: Error, Sendable { public var text: String; public init(_ t: String) { text = t } }

/// A list loaded from a file under rules/.
public enum RuleList: Sendable {
    case networks([IPNetwork])
    /// Domains: an entry matches itself and its subdomains.
    case domains(Set<String>)
    case strings(Set<String>)
    case patterns([Glob])

    var kind: String {
        switch self {
        case .networks: return "ip"
        case .domains: return "domain"
        case .strings: return "string"
        case .patterns: return "pattern"
        }
    }

    func contains(_ s: String) -> Bool {
        switch self {
        case .networks(let n): return IPAddress(s).map { ip in n.contains { $0.contains(ip) } } ?? false
        case .domains(let d):
            var name = s.lowercased()
            if name.hasSuffix(".") { name.removeLast() }
            while true {
                if d.contains(name) { return true }
                guard let dot = name.firstIndex(of: ".") else { return false }
                name = String(name[name.index(after: dot)...])
            }
        case .strings(let set): return set.contains(s.lowercased())
        case .patterns(let g): return g.contains { $0.matches(s) }
        }
    }
}

indirect enum CExpr: Sendable {
    case const(FactValue)
    case fact(String, FactType)
    case keyed(String, FactType, CExpr)
    case not(CExpr)
    case and(CExpr, CExpr)
    case or(CExpr, CExpr)
    case equal(CExpr, CExpr)
    case compare(String, CExpr, CExpr)
    case ipIn(CExpr, [IPNetwork])
    case inList(CExpr, RuleList)
    case inSet(CExpr, CExpr)
    case inStrings(CExpr, Set<String>)
    case contains(CExpr, CExpr)
    case matches(CExpr, Glob)

    func eval(_ facts: (String) -> FactValue?) -> FactValue {
        switch self {
        case .const(let v): return v
        case .fact(let n, let t): return facts(n) ?? t.zero
        case .keyed(let n, let t, let k):
            guard case .keyed(let m)? = facts(n), case .string(let key) = k.eval(facts) else {
                if case .keyed(let inner) = t { return inner.zero }
                return t.zero
            }
            if let v = m[key.lowercased()] { return v }
            if case .keyed(let inner) = t { return inner.zero }
            return t.zero
        case .not(let e): return .bool(!e.truth(facts))
        case .and(let a, let b): return .bool(a.truth(facts) && b.truth(facts))
        case .or(let a, let b): return .bool(a.truth(facts) || b.truth(facts))
        case .equal(let a, let b):
            switch (a.eval(facts), b.eval(facts)) {
            case (.string(let x), .string(let y)): return .bool(x.lowercased() == y.lowercased())
            case (let x, let y): return .bool(x == y)
            }
        case .compare(let op, let a, let b):
            guard case .number(let x) = a.eval(facts), case .number(let y) = b.eval(facts) else { return .bool(false) }
            switch op {
            case "<": return .bool(x < y)
            case "<=": return .bool(x <= y)
            case ">": return .bool(x > y)
            default: return .bool(x >= y)
            }
        case .ipIn(let e, let nets):
            guard case .ip(let ip?) = e.eval(facts) else { return .bool(false) }
            return .bool(nets.contains { $0.contains(ip) })
        case .inList(let e, let list):
            switch e.eval(facts) {
            case .ip(let ip?):
                if case .networks(let n) = list { return .bool(n.contains { $0.contains(ip) }) }
                return .bool(false)
            case .string(let s): return .bool(!s.isEmpty && list.contains(s))
            default: return .bool(false)
            }
        case .inSet(let e, let set):
            guard case .string(let s) = e.eval(facts), case .set(let members) = set.eval(facts) else { return .bool(false) }
            return .bool(members.contains(s.lowercased()))
        case .inStrings(let e, let set):
            guard case .string(let s) = e.eval(facts) else { return .bool(false) }
            return .bool(set.contains(s.lowercased()))
        case .contains(let a, let b):
            guard case .string(let needle) = b.eval(facts) else { return .bool(false) }
            switch a.eval(facts) {
            case .string(let hay): return .bool(hay.lowercased().contains(needle.lowercased()))
            case .set(let s): return .bool(s.contains(needle.lowercased()))
            default: return .bool(false)
            }
        case .matches(let e, let g):
            guard case .string(let s) = e.eval(facts) else { return .bool(false) }
            return .bool(g.matches(s))
        }
    }

    func truth(_ facts: (String) -> FactValue?) -> Bool {
        if case .bool(let b) = eval(facts) { return b }
        return false
    }

    /// The facts the expression reads, as a rule author wrote them, with their values now.
    func readValues(_ facts: (String) -> FactValue?) -> [(String, String)] {
        var out: [(String, String)] = []
        var seen = Set<String>()
        func walk(_ e: CExpr) {
            switch e {
            case .const: break
            case .fact(let n, _):
                if seen.insert(n).inserted { out.append((n, e.eval(facts).description)) }
            case .keyed(let n, _, let k):
                let key = k.eval(facts).description
                let shown = "\(n)(\"\(key)\")"
                if seen.insert(shown).inserted { out.append((shown, e.eval(facts).description)) }
            case .not(let x), .ipIn(let x, _), .inList(let x, _), .inStrings(let x, _), .matches(let x, _): walk(x)
            case .and(let a, let b), .or(let a, let b), .equal(let a, let b), .compare(_, let a, let b), .inSet(let a, let b),
                 .contains(let a, let b): walk(a); walk(b)
            }
        }
        walk(self)
        return out
    }

    /// Facts the expression reads.
    var reads: [String] {
        switch self {
        case .const: return []
        case .fact(let n, _): return [n]
        case .keyed(let n, _, let k): return [n] + k.reads
        case .not(let e), .ipIn(let e, _), .inList(let e, _), .inStrings(let e, _), .matches(let e, _): return e.reads
        case .and(let a, let b), .or(let a, let b), .equal(let a, let b), .compare(_, let a, let b), .inSet(let a, let b),
             .contains(let a, let b): return a.reads + b.reads
        }
    }
}

/// Text with `{fact}` placeholders, filled at decision time. Values are cut to 200
/// characters and stripped of control characters before they reach a reply.
public struct Template: Sendable, Equatable {
    enum Part: Sendable, Equatable { case text(String), fact(String) }
    let parts: [Part]

    public func render(_ facts: (String) -> FactValue?) -> String {
        var out = ""
        for p in parts {
            switch p {
            case .text(let t): out += t
            case .fact(let n):
                let v = facts(n)?.description ?? ""
                out += String(v.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }.prefix(200).map(Character.init))
            }
        }
        return out
    }

    public var source: String {
        parts.map { if case .text(let t) = $0 { return t.replacingOccurrences(of: "{", with: "{{") } else if case .fact(let n) = $0 { return "{\(n)}" }; return "" }.joined()
    }
}

public struct ReplyTemplate: Sendable, Equatable {
    public var code: Int
    public var enhanced: String
    public var text: Template

    public func render(_ facts: (String) -> FactValue?) -> SMTPReply {
        SMTPReply(code, enhanced, text.render(facts))
    }
}

public enum RuleAction: Sendable, Equatable {
    case accept
    case reject(ReplyTemplate)
    case tempfail(ReplyTemplate)
    case greylist
    case score(Double)
    case header(String, Template)
    case log(Template?)

    var isTerminal: Bool {
        switch self {
        case .accept, .reject, .tempfail, .greylist: return true
        default: return false
        }
    }
}

public struct CompiledRule: Sendable {
    public var name: String
    public var file: String
    public var line: Int
    public var stage: Stage
    public var monitor: Bool
    /// Reply later, at this stage, instead of now (deferred rejection).
    public var deferTo: Stage?
    let condition: CExpr?
    public var actions: [RuleAction]

    public var place: String { "\(file):\(line)" }
    public var terminal: RuleAction? { actions.first { $0.isTerminal } }
    /// Facts the condition reads (for the simulation trace).
    public var reads: [String] { condition?.reads ?? [] }
    /// The facts the condition reads with their current values.
    public func readValues(_ facts: (String) -> FactValue?) -> [(String, String)] { condition?.readValues(facts) ?? [] }

    public func fires(_ facts: (String) -> FactValue?) -> Bool { condition?.truth(facts) ?? true }
}

// MARK: Compiler

/// Compiles rule files against the facts a policy can know, reporting every error with its
/// file, line and column.
struct RuleCompiler {
    /// Every fact by name: the session's and those of every check the policy runs.
    var facts: [String: FactDecl]
    /// Facts of checks that exist but that this policy does not run: fact → check.
    var factsOfOtherChecks: [String: String]
    var policyName: String
    /// Checks the policy runs (for `greylist`).
    var checks: Set<String>
    /// The policy's greylist check runs in `mode: rules` (for `greylist`).
    var greylistByRule: Bool
    var diagnostics: [PolicyDiagnostic] = []
    /// Every file read (rule and list files), for the version hash.
    var filesRead: [(String, [UInt8])] = []

    init(facts: [FactDecl], otherChecks: [String: [FactDecl]], policyName: String, checks: Set<String>, greylistByRule: Bool = false) {
        var f: [String: FactDecl] = [:]
        for d in facts { f[d.name] = d }
        self.facts = f
        var o: [String: String] = [:]
        for (check, decls) in otherChecks { for d in decls where f[d.name] == nil { o[d.name] = check } }
        self.factsOfOtherChecks = o
        self.policyName = policyName
        self.checks = checks
        self.greylistByRule = greylistByRule
    }

    mutating func error(_ file: String, _ p: SourcePosition?, _ msg: String) {
        diagnostics.append(PolicyDiagnostic(file: file, p, msg))
    }

    /// Loads and compiles one rule file.
    mutating func compileFile(path: String, displayPath: String) -> [CompiledRule] {
        guard let data = FileManager.default.contents(atPath: path) else {
            error(displayPath, nil, "cannot read rule file")
            return []
        }
        filesRead.append((displayPath, Array(data)))
        let text = String(decoding: data, as: UTF8.self)
        var parser = Parser(text, file: displayPath)
        let syntax = parser.parseFile()
        diagnostics += parser.diagnostics
        var lists: [String: RuleList] = [:]
        let dir = (path as NSString).deletingLastPathComponent
        for l in syntax.lists {
            if lists[l.name] != nil || facts[l.name] != nil {
                error(displayPath, l.pos, "list name '\(l.name)' is already used")
                continue
            }
            let full = l.path.hasPrefix("/") ? l.path : (dir as NSString).appendingPathComponent(l.path)
            let shown = l.path.hasPrefix("/") ? l.path : normalizePath((((displayPath as NSString).deletingLastPathComponent) as NSString).appendingPathComponent(l.path))
            if let list = loadList(kind: l.kind, kindPos: l.kindPos, path: full, shown: shown, file: displayPath, pathPos: l.pathPos) {
                lists[l.name] = list
            }
        }
        var out: [CompiledRule] = []
        var names: [String: SourcePosition] = [:]
        for r in syntax.rules {
            if let prev = names[r.name] {
                error(displayPath, r.pos, "duplicate rule name \"\(r.name)\" (first at line \(prev.line))")
            }
            names[r.name] = r.pos
            if let c = compileRule(r, file: displayPath, lists: lists) { out.append(c) }
        }
        return out
    }

    mutating func loadList(kind: String, kindPos: SourcePosition, path: String, shown: String, file: String, pathPos: SourcePosition) -> RuleList? {
        guard ["ip", "domain", "string", "pattern"].contains(kind) else {
            error(file, kindPos, "unknown list type '\(kind)' (known: ip, domain, string, pattern)")
            return nil
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            error(file, pathPos, "list file '\(shown)' cannot be read")
            return nil
        }
        filesRead.append((shown, Array(data)))
        var nets: [IPNetwork] = []
        var strings = Set<String>()
        var globs: [Glob] = []
        for (n, raw) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let entry = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if entry.isEmpty { continue }
            let col = (raw.firstIndex(where: { $0 != " " && $0 != "\t" }).map { raw.distance(from: raw.startIndex, to: $0) } ?? 0) + 1
            let pos = SourcePosition(line: n + 1, column: col)
            switch kind {
            case "ip":
                guard let net = IPNetwork(entry) else { error(shown, pos, "'\(entry)' is not an address or network"); continue }
                nets.append(net)
            case "domain":
                var d = entry.lowercased()
                if d.hasPrefix("*.") || d.hasPrefix(".") { d = String(d.drop { $0 == "*" || $0 == "." }) }
                if d.hasSuffix(".") { d.removeLast() }
                guard AddressParser.isDomain(Substring(d), allowUTF8: true) else { error(shown, pos, "'\(entry)' is not a domain name"); continue }
                strings.insert(d)
            case "pattern":
                switch Glob.parse(entry) {
                case .success(let g): globs.append(g)
                case .failure(let m): error(shown, pos, m.text)
                }
            default:
                strings.insert(entry.lowercased())
            }
        }
        switch kind {
        case "ip": return .networks(nets)
        case "domain": return .domains(strings)
        case "pattern": return .patterns(globs)
        default: return .strings(strings)
        }
    }

    mutating func compileRule(_ r: RuleSyntax, file: String, lists: [String: RuleList]) -> CompiledRule? {
        guard let stage = Stage(rawValue: r.stage) else {
            error(file, r.stagePos, "unknown stage '\(r.stage)' (stages: connect, helo, mail, rcpt, data, message)")
            return nil
        }
        let before = diagnostics.count
        var deferTo: Stage?
        if let d = r.deferTo {
            deferTo = Stage(rawValue: d)
            if stage > .mail { error(file, r.deferPos, "'defer' applies to rules at connect, helo or mail; this rule is at \(stage.rawValue)") }
        }
        var cond: CExpr?
        if let c = r.condition {
            var ctx = ExprContext(file: file, stage: stage, lists: lists)
            if let (e, t) = compileExpr(c, &ctx) {
                if t != .bool {
                    error(file, c.pos, "the condition is a \(t), not true or false")
                } else {
                    cond = e
                    if case .const(.bool(false)) = fold(e) {
                        error(file, c.pos, "rule \"\(r.name)\" can never fire: its condition is always false")
                    }
                }
            }
        }
        var actions: [RuleAction] = []
        var terminalSeen: ActionSyntax?
        for a in r.actions {
            if a.isTerminal {
                if let t = terminalSeen {
                    error(file, a.pos, "rule \"\(r.name)\" already decides at \(t.pos); a rule has at most one of accept, reject, tempfail, greylist")
                    continue
                }
                terminalSeen = a
            }
            switch a {
            case .accept: actions.append(.accept)
            case .greylist(let p):
                if !checks.contains("greylist") {
                    error(file, p, "'greylist' needs the check 'greylist', which policy \(policyName) does not run")
                } else if !greylistByRule {
                    error(file, p, "'greylist' in a rule needs the greylist check's 'mode: rules'; in mode 'all' it greylists every recipient itself")
                } else if stage != .rcpt && stage != .message {
                    error(file, p, "'greylist' acts at rcpt or message, where the triplet (client, sender, recipient) is known, not at \(stage.rawValue)")
                }
                actions.append(.greylist)
            case .reject(let rs):
                if let t = replyTemplate(rs, permanent: true, stage: stage, rule: r.name, file: file, lists: lists) { actions.append(.reject(t)) }
            case .tempfail(let rs):
                if let t = replyTemplate(rs, permanent: false, stage: stage, rule: r.name, file: file, lists: lists) { actions.append(.tempfail(t)) }
            case .score(let v, _): actions.append(.score(v))
            case .header(let n, let v, _, let vp):
                if let t = template(v, at: vp, file: file, stage: stage) { actions.append(.header(n, t)) }
            case .log(let text, let p):
                if let text {
                    if let t = template(text, at: p, file: file, stage: stage) { actions.append(.log(t)) }
                } else {
                    actions.append(.log(nil))
                }
            }
        }
        if r.deferTo != nil, let t = terminalSeen {
            switch t {
            case .reject, .tempfail: break
            default: error(file, r.deferPos, "'defer' needs a reject or tempfail action")
            }
        }
        guard diagnostics.count == before else { return nil }
        return CompiledRule(name: r.name, file: file, line: r.pos.line, stage: stage, monitor: r.monitor, deferTo: deferTo,
                            condition: cond, actions: actions)
    }

    mutating func replyTemplate(_ r: ReplySyntax, permanent: Bool, stage: Stage, rule: String, file: String, lists: [String: RuleList]) -> ReplyTemplate? {
        let code = r.code ?? (permanent ? (stage == .connect ? 554 : 550) : 451)
        if permanent && code < 500 { error(file, r.pos, "reject needs a 5xx code, found \(code) (use tempfail for 4xx)"); return nil }
        if !permanent && code >= 500 { error(file, r.pos, "tempfail needs a 4xx code, found \(code) (use reject for 5xx)"); return nil }
        let enhanced = r.enhanced ?? (permanent ? "5.7.1" : "4.7.1")
        if enhanced.first != (permanent ? "5" : "4") {
            error(file, r.pos, "enhanced code \(enhanced) does not match reply code \(code)")
            return nil
        }
        let text = r.text ?? (permanent ? "Rejected by policy" : "Try again later")
        guard let t = template(text, at: r.textPos ?? r.pos, file: file, stage: stage) else { return nil }
        return ReplyTemplate(code: code, enhanced: enhanced, text: t)
    }

    /// Parses `{fact}` placeholders; `{{` and `}}` stand for braces.
    mutating func template(_ s: String, at pos: SourcePosition, file: String, stage: Stage) -> Template? {
        var parts: [Template.Part] = []
        var text = ""
        let chars = Array(s)
        var i = 0
        var ok = true
        while i < chars.count {
            let c = chars[i]
            if c == "{" && i + 1 < chars.count && chars[i + 1] == "{" { text.append("{"); i += 2; continue }
            if c == "}" && i + 1 < chars.count && chars[i + 1] == "}" { text.append("}"); i += 2; continue }
            if c == "{" {
                guard let close = chars[i...].firstIndex(of: "}") else {
                    error(file, SourcePosition(line: pos.line, column: pos.column + 1 + i), "unclosed '{' in text (write {{ for a brace)")
                    return nil
                }
                let name = String(chars[(i + 1)..<close])
                let p = SourcePosition(line: pos.line, column: pos.column + 2 + i)
                if let d = facts[name] {
                    if d.stage > stage {
                        error(file, p, "placeholder {\(name)} is not known at \(stage.rawValue): it is known from \(d.stage.rawValue)")
                        ok = false
                    }
                } else {
                    error(file, p, unknownFact(name))
                    ok = false
                }
                if !text.isEmpty { parts.append(.text(text)); text = "" }
                parts.append(.fact(name))
                i = close + 1
                continue
            }
            text.append(c)
            i += 1
        }
        if !text.isEmpty { parts.append(.text(text)) }
        return ok ? Template(parts: parts) : nil
    }

    func unknownFact(_ name: String) -> String {
        if let check = factsOfOtherChecks[name] {
            return "fact '\(name)' needs the check '\(check)', which policy \(policyName) does not run (add it under checks:)"
        }
        let all = Array(facts.keys) + Array(factsOfOtherChecks.keys)
        if let best = all.min(by: { editDistance($0, name) < editDistance($1, name) }), editDistance(best, name) <= 3 {
            return "unknown fact '\(name)'; did you mean '\(best)'?"
        }
        return "unknown fact '\(name)'"
    }

    struct ExprContext {
        var file: String
        var stage: Stage
        var lists: [String: RuleList]
    }

    /// Type-checks and compiles an expression. Nil after reporting an error.
    mutating func compileExpr(_ e: Expr, _ c: inout ExprContext) -> (CExpr, FactType)? {
        switch e {
        case .bool(let b, _): return (.const(.bool(b)), .bool)
        case .number(let d, _): return (.const(.number(d)), .number)
        case .string(let s, _): return (.const(.string(s)), .string)
        case .list(_, let p):
            error(c.file, p, "a [list] can only follow 'in'")
            return nil
        case .path(let name, let p):
            if c.lists[name] != nil {
                error(c.file, p, "'\(name)' is a list; use it after 'in' or 'matches'")
                return nil
            }
            guard let d = fact(name, p, &c) else { return nil }
            if case .keyed = d.type {
                error(c.file, p, "'\(name)' needs a key: \(name)(\"…\")")
                return nil
            }
            return (.fact(name, d.type), d.type)
        case .call(let name, let arg, let p):
            guard let d = fact(name, p, &c) else { return nil }
            guard case .keyed(let inner) = d.type else {
                error(c.file, p, "'\(name)' is a \(d.type), it takes no key")
                return nil
            }
            guard let (a, at) = compileExpr(arg, &c) else { return nil }
            guard at == .string else { error(c.file, arg.pos, "the key of \(name)(…) must be a string, found \(at)"); return nil }
            return (.keyed(name, d.type, a), inner)
        case .not(let inner, let p):
            guard let (x, t) = compileExpr(inner, &c) else { return nil }
            guard t == .bool else { error(c.file, p, "'not' needs true or false, found \(t)"); return nil }
            return (.not(x), .bool)
        case .and(let a, let b), .or(let a, let b):
            let l = compileExpr(a, &c)
            let r = compileExpr(b, &c)
            guard let (x, xt) = l, let (y, yt) = r else { return nil }
            let word: String
            if case .and = e { word = "and" } else { word = "or" }
            if xt != .bool { error(c.file, a.pos, "'\(word)' needs true or false on its left, found \(xt)"); return nil }
            if yt != .bool { error(c.file, b.pos, "'\(word)' needs true or false on its right, found \(yt)"); return nil }
            if case .and = e { return (.and(x, y), .bool) }
            return (.or(x, y), .bool)
        case .binary(let op, let a, let b, let p):
            return compileBinary(op, a, b, p, &c)
        }
    }

    mutating func fact(_ name: String, _ p: SourcePosition, _ c: inout ExprContext) -> FactDecl? {
        guard let d = facts[name] else {
            error(c.file, p, unknownFact(name))
            return nil
        }
        if d.stage > c.stage {
            error(c.file, p, "'\(name)' is not known yet at \(c.stage.rawValue): it is known from \(d.stage.rawValue) on")
            return nil
        }
        return d
    }

    mutating func compileBinary(_ op: String, _ a: Expr, _ b: Expr, _ p: SourcePosition, _ c: inout ExprContext) -> (CExpr, FactType)? {
        switch op {
        case "in":
            guard let (x, xt) = compileExpr(a, &c) else { return nil }
            // Right side: a named list, a [list] literal, a CIDR string (for ip), or a set fact.
            if case .path(let name, let lp) = b, let list = c.lists[name] {
                switch (xt, list) {
                case (.ip, .networks), (.string, .domains), (.string, .strings), (.string, .patterns), (.string, .networks):
                    return (.inList(x, list), .bool)
                default:
                    error(c.file, lp, "'\(name)' is a list of type \(list.kind) and cannot hold a \(xt)")
                    return nil
                }
            }
            if xt == .ip {
                var items: [(String, SourcePosition)] = []
                if case .string(let s, let sp) = b { items = [(s, sp)] }
                else if case .list(let l, _) = b {
                    for it in l {
                        guard case .string(let s, let sp) = it else { error(c.file, it.pos, "network lists hold quoted networks like \"10.0.0.0/8\""); return nil }
                        items.append((s, sp))
                    }
                } else { error(c.file, b.pos, "an address can be 'in' an ip list, a \"network\" or a [list] of networks"); return nil }
                var nets: [IPNetwork] = []
                for (s, sp) in items {
                    guard let n = IPNetwork(s) else { error(c.file, sp, "'\(s)' is not an address or network"); return nil }
                    nets.append(n)
                }
                return (.ipIn(x, nets), .bool)
            }
            guard xt == .string else { error(c.file, a.pos, "'in' needs a string or an address on its left, found \(xt)"); return nil }
            if case .list(let l, _) = b {
                var set = Set<String>()
                for it in l {
                    guard case .string(let s, _) = it else { error(c.file, it.pos, "a [list] holds quoted strings"); return nil }
                    set.insert(s.lowercased())
                }
                return (.inStrings(x, set), .bool)
            }
            guard let (y, yt) = compileExpr(b, &c) else { return nil }
            guard yt == .set else { error(c.file, b.pos, "'in' needs a list or a set on its right, found \(yt)"); return nil }
            return (.inSet(x, y), .bool)
        case "matches":
            guard let (x, xt) = compileExpr(a, &c) else { return nil }
            guard xt == .string else { error(c.file, a.pos, "'matches' needs a string on its left, found \(xt)"); return nil }
            if case .path(let name, let lp) = b, let list = c.lists[name] {
                guard case .patterns = list else { error(c.file, lp, "'\(name)' is a list of type \(list.kind); 'matches' needs a pattern list"); return nil }
                return (.inList(x, list), .bool)
            }
            guard case .string(let s, let sp) = b else { error(c.file, b.pos, "'matches' needs a \"pattern\" or a pattern list"); return nil }
            switch Glob.parse(s) {
            case .success(let g): return (.matches(x, g), .bool)
            case .failure(let m): error(c.file, sp, m.text); return nil
            }
        case "contains":
            let l = compileExpr(a, &c)
            let r = compileExpr(b, &c)
            guard let (x, xt) = l, let (y, yt) = r else { return nil }
            guard xt == .string || xt == .set else { error(c.file, a.pos, "'contains' needs a string or a set on its left, found \(xt)"); return nil }
            guard yt == .string else { error(c.file, b.pos, "'contains' needs a string on its right, found \(yt)"); return nil }
            return (.contains(x, y), .bool)
        default:
            let l = compileExpr(a, &c)
            let r = compileExpr(b, &c)
            guard var (x, xt) = l, var (y, yt) = r else { return nil }
            // An address compared with a quoted address.
            if xt == .ip, case .const(.string(let s)) = y {
                guard let ip = IPAddress(s) else { error(c.file, b.pos, "'\(s)' is not an IP address"); return nil }
                y = .const(.ip(ip)); yt = .ip
            }
            if yt == .ip, case .const(.string(let s)) = x {
                guard let ip = IPAddress(s) else { error(c.file, a.pos, "'\(s)' is not an IP address"); return nil }
                x = .const(.ip(ip)); xt = .ip
            }
            if op == "==" || op == "!=" {
                guard xt == yt, xt != .set else { error(c.file, p, "cannot compare a \(xt) with a \(yt) using \(op)"); return nil }
                // A string fact with known values against a literal it can never take.
                for (f, lit, lp) in [(x, y, b.pos), (y, x, a.pos)] {
                    if case .fact(let name, _) = f, let values = facts[name]?.values, case .const(.string(let s)) = lit,
                       !values.contains(s.lowercased()) {
                        error(c.file, lp, "'\(name)' is never \"\(s)\" (it is one of: \(values.joined(separator: ", "))), so this comparison is always \(op == "==" ? "false" : "true")")
                        return nil
                    }
                }
                let eq = CExpr.equal(x, y)
                return (op == "==" ? eq : .not(eq), .bool)
            }
            guard xt == .number, yt == .number else { error(c.file, p, "\(op) compares numbers, found \(xt) and \(yt)"); return nil }
            return (.compare(op, x, y), .bool)
        }
    }

    /// Constant folding, enough to see conditions that can never be true.
    func fold(_ e: CExpr) -> CExpr {
        switch e {
        case .not(let x):
            if case .const(.bool(let b)) = fold(x) { return .const(.bool(!b)) }
            return e
        case .and(let a, let b):
            let fa = fold(a), fb = fold(b)
            if case .const(.bool(false)) = fa { return fa }
            if case .const(.bool(false)) = fb { return fb }
            if case .const(.bool(true)) = fa, case .const(.bool(true)) = fb { return fa }
            return e
        case .or(let a, let b):
            let fa = fold(a), fb = fold(b)
            if case .const(.bool(true)) = fa { return fa }
            if case .const(.bool(true)) = fb { return fb }
            if case .const(.bool(false)) = fa, case .const(.bool(false)) = fb { return fa }
            return e
        case .equal(let a, let b):
            if case .const(let x) = a, case .const(let y) = b { return .const(.bool(x == y)) }
            return e
        case .compare:
            if e.reads.isEmpty { return .const(e.eval { _ in nil }) }
            return e
        case .inStrings(_, let s) where s.isEmpty: return .const(.bool(false))
        case .ipIn(_, let n) where n.isEmpty: return .const(.bool(false))
        default: return e
        }
    }
}

func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var prev = Array(0...y.count)
    for i in 1...x.count {
        var cur = [i] + [Int](repeating: 0, count: y.count)
        for j in 1...y.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[y.count]
}
