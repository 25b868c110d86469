import SMTPProtocol
import Foundation
import Yams
import DecisionLog

/// What a check does when its backend (DNS, a store, the network) fails: pass with a
/// logged error (fail open) or answer 4xx (fail closed).
public enum FailureMode: String, Sendable, CaseIterable {
    case pass, tempfail
}

/// What the policy compiler needs to know about a check that exists.
public struct CheckInfo: Sendable {
    public var name: String
    public var stages: Set<Stage>
    /// The values of `<name>.result`; nil when open-ended.
    public var results: [String]?
    /// Facts beyond `<name>.result` and `<name>.reason`, with their full names.
    public var facts: [FactDecl]
    public var defaultOnError: FailureMode
    public init(name: String, stages: Set<Stage>, results: [String]?, facts: [FactDecl] = [], defaultOnError: FailureMode) {
        self.name = name
        self.stages = stages
        self.results = results
        self.facts = facts
        self.defaultOnError = defaultOnError
    }

    /// Every fact the check reports.
    public var allFacts: [FactDecl] {
        let first = stages.min() ?? .connect
        return [FactDecl("\(name).result", .string, first, values: results.map { $0 + ["timeout", "error"] },
                         "the \(name) check's result"),
                FactDecl("\(name).reason", .string, first, "why the \(name) check answered as it did")] + facts
    }
}

/// Builds checks by name from their settings. The gateway's implementation knows every
/// check; adding a check is one entry there.
public protocol CheckFactory: Sendable {
    var catalog: [CheckInfo] { get }
    /// Makes a check from its settings node (nil: no settings), reporting bad settings to
    /// `reader`. Nil when the settings were wrong.
    func make(_ name: String, settings: Node?, reader: inout YAMLReader) -> (any Check)?
}

/// A check as a policy runs it.
public struct PolicyCheck: Sendable {
    public var check: any Check
    public var onError: FailureMode
    public init(_ check: any Check, onError: FailureMode) {
        self.check = check
        self.onError = onError
    }
}

/// Score thresholds, evaluated at the end of data on the total score (as rspamd does).
public struct Thresholds: Sendable, Equatable {
    public var header: Double?
    public var tempfail: Double?
    public var reject: Double?
    public init(header: Double? = nil, tempfail: Double? = nil, reject: Double? = nil) {
        self.header = header
        self.tempfail = tempfail
        self.reject = reject
    }
    public var isEmpty: Bool { header == nil && tempfail == nil && reject == nil }
}

/// A compiled, checked policy: immutable, shared by every session that started under it.
public final class CompiledPolicy: Sendable {
    public let name: String
    /// The first 12 hex digits of the SHA-256 of every file the policy read.
    public let version: String
    public let path: String?
    public let description: String
    public let monitor: Bool
    /// Replies of connect, helo and mail decisions are given at this stage instead.
    public let deferRejection: Stage?
    public let checks: [PolicyCheck]
    public let rules: [CompiledRule]
    public let thresholds: Thresholds
    public let checkTimeout: Duration
    /// Files read, for `policy check` and the watcher.
    public let files: [String]
    /// The checks as one pipeline, and the stages that have a check or a rule: made once
    /// here, not for every session.
    let pipeline: Pipeline
    let checkStages: Set<Stage>
    let ruleStages: Set<Stage>

    public init(name: String, version: String, path: String?, description: String = "", monitor: Bool = false,
                deferRejection: Stage? = nil, checks: [PolicyCheck], rules: [CompiledRule] = [],
                thresholds: Thresholds = Thresholds(), checkTimeout: Duration = .seconds(30), files: [String] = []) {
        self.name = name
        self.version = version
        self.path = path
        self.description = description
        self.monitor = monitor
        self.deferRejection = deferRejection
        self.checks = checks
        self.rules = rules
        self.thresholds = thresholds
        self.checkTimeout = checkTimeout
        self.files = files
        pipeline = Pipeline(checks: checks.map(\.check), checkTimeout: checkTimeout)
        checkStages = checks.reduce(into: []) { $0.formUnion($1.check.stages) }
        ruleStages = Set(rules.map(\.stage))
    }

    public func rules(at stage: Stage) -> [CompiledRule] { rules.filter { $0.stage == stage } }

    public func runs(at stage: Stage) -> Bool {
        waits(at: stage) || (stage == .message && !thresholds.isEmpty)
    }

    /// Whether a stage can wait: a check or a rule (which may greylist) is there.
    public func waits(at stage: Stage) -> Bool {
        checkStages.contains(stage) || ruleStages.contains(stage)
    }

    /// Facts every check of this policy reports, and the session's.
    public static func factDeclarations(checks: [String], factory: CheckFactory) -> [FactDecl] {
        SessionFacts.declarations + factory.catalog.filter { checks.contains($0.name) }.flatMap(\.allFacts)
    }
}

/// Reads YAML nodes, collecting diagnostics with file, line and column.
public struct YAMLReader {
    public let file: String
    public var diagnostics: [PolicyDiagnostic] = []
    public init(file: String) { self.file = file }

    public mutating func fail(_ n: Node?, _ msg: String) {
        diagnostics.append(PolicyDiagnostic(file: file, n?.mark.map { SourcePosition(line: $0.line, column: $0.column) }, msg))
    }

    /// The entries of a mapping, refusing unknown and duplicate keys.
    public mutating func mapping(_ n: Node?, _ what: String, allowed: [String]) -> [(String, Node)] {
        guard let n else { return [] }
        if let s = n.scalar?.string, s.isEmpty || s == "~" || s == "null" { return [] }
        guard let m = n.mapping else { fail(n, "\(what) must be a mapping"); return [] }
        var out: [(String, Node)] = []
        var seen = Set<String>()
        for (k, v) in m {
            guard let key = k.string else { fail(k, "\(what): keys must be strings"); continue }
            guard allowed.contains(key) else {
                let hint = allowed.min { editDistance($0, key) < editDistance($1, key) }.flatMap { editDistance($0, key) <= 3 ? "; did you mean '\($0)'?" : nil }
                fail(k, "unknown key '\(key)' in \(what)\(hint ?? " (known: \(allowed.joined(separator: ", ")))")")
                continue
            }
            if !seen.insert(key).inserted { fail(k, "duplicate key '\(key)' in \(what)"); continue }
            out.append((key, v))
        }
        return out
    }

    public mutating func bool(_ n: Node, _ key: String) -> Bool? {
        switch n.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: fail(n, "'\(key)' must be true or false"); return nil
        }
    }

    /// Settings are bounded so that every product made of them (seconds to milliseconds or
    /// nanoseconds, a count times a size) stays far inside Int.
    public static let numberLimit = 1_000_000_000.0

    public mutating func number(_ n: Node, _ key: String) -> Double? {
        guard let s = n.scalar?.string, let d = Double(s), d.isFinite else { fail(n, "'\(key)' must be a number"); return nil }
        guard abs(d) <= Self.numberLimit else { fail(n, "'\(key)' must be between -1e9 and 1e9"); return nil }
        return d
    }

    public mutating func int(_ n: Node, _ key: String, min: Int = 0, max: Int = 1_000_000_000) -> Int? {
        guard let s = n.scalar?.string, let v = Int(s) else { fail(n, "'\(key)' must be an integer"); return nil }
        guard v >= min else { fail(n, "'\(key)' must be at least \(min)"); return nil }
        guard v <= max else { fail(n, "'\(key)' must be at most \(max)"); return nil }
        return v
    }

    public mutating func string(_ n: Node, _ key: String) -> String? {
        guard let s = n.scalar?.string else { fail(n, "'\(key)' must be a string"); return nil }
        return s
    }

    public mutating func strings(_ n: Node, _ key: String) -> [(String, Node)]? {
        if let s = n.scalar?.string { return [(s, n)] }
        guard let seq = n.sequence else { fail(n, "'\(key)' must be a list"); return nil }
        var out: [(String, Node)] = []
        for item in seq {
            guard let s = item.scalar?.string else { fail(item, "'\(key)' entries must be strings"); continue }
            out.append((s, item))
        }
        return out
    }

    /// Parses YAML text, reporting a syntax error at its place.
    public mutating func compose(_ text: String) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let e as YamlError {
            var pos: SourcePosition?
            var what = "\(e)"
            if case .scanner(_, let problem, let mark, _) = e { pos = SourcePosition(line: mark.line, column: mark.column); what = problem }
            if case .parser(_, let problem, let mark, _) = e { pos = SourcePosition(line: mark.line, column: mark.column); what = problem }
            diagnostics.append(PolicyDiagnostic(file: file, pos, "YAML syntax error: \(what)"))
            return nil
        } catch {
            diagnostics.append(PolicyDiagnostic(file: file, nil, "YAML error: \(error)"))
            return nil
        }
    }
}

/// `a/b/../c` → `a/c`, for paths as they are shown in diagnostics and logs.
func normalizePath(_ p: String) -> String {
    var out: [Substring] = []
    for c in p.split(separator: "/", omittingEmptySubsequences: false) {
        if c == "." { continue }
        if c == "..", let last = out.last, last != "..", !last.isEmpty { out.removeLast(); continue }
        out.append(c)
    }
    let s = out.joined(separator: "/")
    return s.isEmpty ? "." : s
}

/// Loads a policy file with its rule and list files and compiles it.
public enum PolicyLoader {
    /// Throws `PolicyErrors` listing every problem, each with its place.
    public static func load(path: String, factory: CheckFactory, checkTimeout: Duration = .seconds(30)) throws -> CompiledPolicy {
        var reader = YAMLReader(file: path)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PolicyErrors([PolicyDiagnostic(file: path, nil, "cannot read policy file")])
        }
        var files: [(String, [UInt8])] = [(path, Array(data))]
        guard let root = reader.compose(String(decoding: data, as: UTF8.self)) else { throw PolicyErrors(reader.diagnostics) }

        var name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        var description = ""
        var monitor = false
        var deferRejection: Stage?
        var checkNodes: [(String, Node, Node?)] = []
        var ruleFiles: [(String, Node)] = []
        var thresholds = Thresholds()
        let known = factory.catalog.map(\.name)

        for (key, v) in reader.mapping(root, "policy", allowed: ["name", "description", "monitor", "deferRejection", "checks", "rules", "thresholds"]) {
            switch key {
            case "name": if let s = reader.string(v, key) { name = s }
            case "description": if let s = reader.string(v, key) { description = s }
            case "monitor": if let b = reader.bool(v, key) { monitor = b }
            case "deferRejection":
                switch v.scalar?.string {
                case "none", "false", "no": deferRejection = nil
                case "rcpt": deferRejection = .rcpt
                case "data": deferRejection = .data
                default: reader.fail(v, "'deferRejection' must be none, rcpt or data")
                }
            case "checks":
                // A list of names or of one-key mappings, or a mapping: order is the order of evaluation.
                if let m = v.mapping {
                    for (k, s) in m { if let n = k.string { checkNodes.append((n, k, s)) } }
                } else if let seq = v.sequence {
                    for item in seq {
                        if let n = item.string { checkNodes.append((n, item, nil)) }
                        else if let m = item.mapping, m.count == 1, let (k, s) = m.first, let n = k.string { checkNodes.append((n, k, s)) }
                        else { reader.fail(item, "a check is a name or a mapping of one name to its settings") }
                    }
                } else {
                    reader.fail(v, "'checks' must be a list or a mapping of check names")
                }
            case "rules": if let list = reader.strings(v, key) { ruleFiles = list }
            case "thresholds":
                for (tk, tv) in reader.mapping(v, "thresholds", allowed: ["header", "tempfail", "reject"]) {
                    let d = reader.number(tv, tk)
                    switch tk {
                    case "header": thresholds.header = d
                    case "tempfail": thresholds.tempfail = d
                    default: thresholds.reject = d
                    }
                }
            default: break
            }
        }
        if let t = thresholds.tempfail, let r = thresholds.reject, t >= r {
            reader.fail(root, "thresholds: tempfail (\(FactValue.format(t))) must be below reject (\(FactValue.format(r))), or it can never apply")
        }

        // Checks.
        var checks: [PolicyCheck] = []
        var names = Set<String>()
        for (n, keyNode, settings) in checkNodes {
            guard let info = factory.catalog.first(where: { $0.name == n }) else {
                let hint = known.min { editDistance($0, n) < editDistance($1, n) }.flatMap { editDistance($0, n) <= 2 ? "; did you mean '\($0)'?" : nil }
                reader.fail(keyNode, "unknown check '\(n)'\(hint ?? " (known: \(known.joined(separator: ", ")))")")
                continue
            }
            if !names.insert(n).inserted { reader.fail(keyNode, "check '\(n)' is listed twice"); continue }
            // onError is common to every check; the rest belongs to the check.
            var onError = info.defaultOnError
            var own: Node? = settings
            if let s = settings, var m = s.mapping {
                if let oe = m["onError"] {
                    if let v = oe.string, let mode = FailureMode(rawValue: v) { onError = mode }
                    else { reader.fail(oe, "'onError' must be pass or tempfail") }
                    m["onError"] = nil
                    own = .mapping(m)
                }
            }
            if let c = factory.make(n, settings: own, reader: &reader) { checks.append(PolicyCheck(c, onError: onError)) }
        }

        // Rules.
        var compiler = RuleCompiler(facts: CompiledPolicy.factDeclarations(checks: Array(names), factory: factory),
                                    otherChecks: Dictionary(factory.catalog.filter { !names.contains($0.name) }.map { ($0.name, $0.allFacts) },
                                                            uniquingKeysWith: { a, _ in a }),
                                    policyName: name, checks: names,
                                    greylistByRule: checks.contains { ($0.check as? RuleGreylisting)?.greylistsByRule == true })
        let dir = (path as NSString).deletingLastPathComponent
        var rules: [CompiledRule] = []
        for (f, node) in ruleFiles {
            let full = f.hasPrefix("/") ? f : (dir as NSString).appendingPathComponent(f)
            if !FileManager.default.fileExists(atPath: full) {
                reader.fail(node, "rule file '\(f)' does not exist (looked for \(full))")
                continue
            }
            rules += compiler.compileFile(path: full, displayPath: normalizePath(full))
        }
        files += compiler.filesRead
        var diagnostics = reader.diagnostics + compiler.diagnostics

        // Rules shadowed by a rule that always decides first.
        for stage in Stage.allCases {
            var decider: CompiledRule?
            for r in rules where r.stage == stage {
                if let d = decider {
                    diagnostics.append(PolicyDiagnostic(file: r.file, SourcePosition(line: r.line, column: 1),
                                                        "rule \"\(r.name)\" can never fire: rule \"\(d.name)\" (\(d.place)) always decides at \(stage.rawValue) first"))
                    continue
                }
                if r.terminal != nil && !r.monitor && r.condition == nil { decider = r }
            }
        }
        if !diagnostics.isEmpty {
            throw PolicyErrors(diagnostics.sorted { ($0.file, $0.position ?? SourcePosition(line: 0, column: 0)) < ($1.file, $1.position ?? SourcePosition(line: 0, column: 0)) })
        }
        return CompiledPolicy(name: name, version: version(of: files), path: path, description: description, monitor: monitor,
                              deferRejection: deferRejection, checks: checks, rules: rules, thresholds: thresholds,
                              checkTimeout: checkTimeout, files: files.map(\.0))
    }

    /// The first 12 hex digits of the SHA-256 over every file's name and content.
    public static func version(of files: [(String, [UInt8])]) -> String {
        var all: [UInt8] = []
        for (name, bytes) in files {
            all += Array(((name as NSString).lastPathComponent).utf8) + [0] + Array(String(bytes.count).utf8) + [0] + bytes
        }
        return String(Digest.sha256Hex(all).prefix(12))
    }
}
