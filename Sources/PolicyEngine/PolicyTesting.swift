import Foundation
import Yams
import SMTPProtocol
import DNSResolver

/// Policy tests: `*.test.yaml` files beside the policies, each a list of sessions with the
/// verdict expected of them.
///
///     policy: default.yaml
///     domains: [example.org]
///     tests:
///       - name: a listed client is refused at RCPT
///         client: 192.0.2.1
///         helo: mail.example.net
///         from: alice@example.net
///         rcpt: [bob@example.org]
///         checks: {helo: {result: invalid}}
///         expect: {action: reject, stage: rcpt, reply: "554 5.7.1 …", rules: [listed]}
public struct PolicyTestCase: Sendable {
    public var name: String
    public var line: Int
    public var input: SimulationInput
    public var expect: [(String, String)]
}

public struct PolicyTestOutcome: Sendable {
    public var file: String
    public var name: String
    public var line: Int
    /// Empty when the test passed; else one line per difference.
    public var differences: [String]
    public var trace: String
    public var passed: Bool { differences.isEmpty }
}

public enum PolicyTestRunner {
    static let expectKeys = ["action", "stage", "reply", "score", "rules", "headers", "would"]

    /// Finds `*.test.yaml` files under a directory (or takes the file given).
    public static func findTests(_ path: String) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return [] }
        if !isDir.boolValue { return [path] }
        let all = (FileManager.default.enumerator(atPath: path)?.allObjects as? [String]) ?? []
        return all.filter { $0.hasSuffix(".test.yaml") || $0.hasSuffix(".test.yml") }.sorted().map { (path as NSString).appendingPathComponent($0) }
    }

    /// Runs every test of one file. Throws `PolicyErrors` when the file or its policy is invalid.
    /// DNS answers come only from the file's `dns:` fixtures, served on loopback for the run;
    /// without them every DNS question fails at once (temperror), and nothing leaves the machine.
    public static func run(file: String, factory: @Sendable (DNSResolver) -> CheckFactory) async throws -> [PolicyTestOutcome] {
        try await withCases(file: file, factory: factory) { policy, cases in
            var out: [PolicyTestOutcome] = []
            for c in cases {
                let r = await PolicySimulator.run(policy, c.input)
                out.append(PolicyTestOutcome(file: file, name: c.name, line: c.line, differences: compare(c.expect, r),
                                             trace: PolicySimulator.describe(r, policy: policy)))
            }
            return out
        }
    }

    /// Loads a test file's policy and cases, its DNS fixtures served on loopback while
    /// `body` runs (for the simulator, or a real gateway session in the parity test).
    public static func withCases<T>(file: String, factory: @Sendable (DNSResolver) -> CheckFactory,
                                    _ body: (CompiledPolicy, [PolicyTestCase]) async throws -> T) async throws -> T {
        let fixtures = try dnsFixtures(file: file)
        var server: DNSFixtureServer?
        if let f = fixtures {
            do {
                let s = try DNSFixtureServer(fixtures: f)
                try await s.start()
                server = s
            } catch {
                throw PolicyErrors([PolicyDiagnostic(file: file, nil, "dns fixtures: \(error)")])
            }
        }
        defer { if let s = server { Task { await s.stop() } } }
        var rc = ResolverConfig(servers: server.map { [NameServer("127.0.0.1:\($0.port)")!] } ?? [])
        rc.timeout = 2
        rc.attempts = 1
        let (policy, cases) = try load(file: file, factory: factory(DNSResolver(config: rc)))
        return try await body(policy, cases)
    }

    /// The `dns:` fixture text of a test file, if it has one.
    static func dnsFixtures(file: String) throws -> String? {
        var rd = YAMLReader(file: file)
        guard let data = FileManager.default.contents(atPath: file) else {
            throw PolicyErrors([PolicyDiagnostic(file: file, nil, "cannot read test file")])
        }
        guard let root = rd.compose(String(decoding: data, as: UTF8.self)) else { throw PolicyErrors(rd.diagnostics) }
        guard let n = root.mapping?["dns"] else { return nil }
        guard let s = n.string else { throw PolicyErrors([PolicyDiagnostic(file: file, n.mark.map { SourcePosition(line: $0.line, column: $0.column) }, "'dns' is fixture text (a | block)")]) }
        return s
    }

    static func compare(_ expect: [(String, String)], _ r: SimulationResult) -> [String] {
        var diffs: [String] = []
        for (k, want) in expect {
            let got: String
            switch k {
            case "action": got = r.action
            case "stage": got = r.action == "accept" ? "" : r.stage.rawValue
            case "reply": got = r.reply?.summary ?? ""
            case "score": got = FactValue.format(r.score)
            case "rules": got = r.rulesFired.joined(separator: ", ")
            // Folded values are compared unfolded.
            case "headers": got = r.headers.map { "\($0.name): \($0.value.replacingOccurrences(of: "\r\n\t", with: " "))" }.joined(separator: "; ")
            case "would": got = r.would.joined(separator: "; ")
            default: continue
            }
            let same = k == "score" ? Double(want).map { abs($0 - r.score) < 1e-9 } ?? false : want == got
            if !same { diffs.append("\(k): expected \(want.isEmpty ? "(none)" : want), got \(got.isEmpty ? "(none)" : got)") }
        }
        return diffs
    }

    static func load(file: String, factory: CheckFactory) throws -> (CompiledPolicy, [PolicyTestCase]) {
        var rd = YAMLReader(file: file)
        guard let data = FileManager.default.contents(atPath: file) else {
            throw PolicyErrors([PolicyDiagnostic(file: file, nil, "cannot read test file")])
        }
        guard let root = rd.compose(String(decoding: data, as: UTF8.self)) else { throw PolicyErrors(rd.diagnostics) }
        let dir = (file as NSString).deletingLastPathComponent
        var policyPath: String?
        var base = SimulationInput(clientIP: .v4(0x7f00_0001))
        var testNodes: [Node] = []
        for (k, v) in rd.mapping(root, "test file", allowed: ["policy", "domains", "authorizedAddresses", "maxmessagesize", "tests", "dns"]) {
            switch k {
            case "dns": break
            case "policy": if let s = rd.string(v, k) { policyPath = s.hasPrefix("/") ? s : (dir as NSString).appendingPathComponent(s) }
            case "domains": if let l = rd.strings(v, k) { base.localDomains = l.map(\.0) }
            case "authorizedAddresses":
                if let l = rd.strings(v, k) {
                    base.authorizedAddresses = l.compactMap { s, n in
                        if let net = IPNetwork(s) { return net }
                        rd.fail(n, "'\(s)' is not a network"); return nil
                    }
                }
            case "maxmessagesize": if let i = rd.int(v, k) { base.maxMessageSize = i * 1024 }
            case "tests": if let seq = v.sequence { testNodes = Array(seq) } else { rd.fail(v, "'tests' must be a list") }
            default: break
            }
        }
        guard let policyPath else {
            rd.fail(root, "the test file must name its policy ('policy: default.yaml')")
            throw PolicyErrors(rd.diagnostics)
        }
        let policy = try PolicyLoader.load(path: policyPath, factory: factory)
        let decls = Dictionary(factory.catalog.flatMap(\.allFacts).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var cases: [PolicyTestCase] = []
        for node in testNodes {
            if let c = readCase(node, base: base, dir: dir, decls: decls, policy: policy, reader: &rd) { cases.append(c) }
        }
        if !rd.diagnostics.isEmpty { throw PolicyErrors(rd.diagnostics) }
        return (policy, cases)
    }

    static func readCase(_ node: Node, base: SimulationInput, dir: String, decls: [String: FactDecl], policy: CompiledPolicy,
                         reader rd: inout YAMLReader) -> PolicyTestCase? {
        var input = base
        var name = "test at line \(node.mark?.line ?? 0)"
        var expect: [(String, String)] = []
        let before = rd.diagnostics.count
        for (k, v) in rd.mapping(node, "test", allowed: ["name", "client", "ptr", "helo", "verb", "from", "rcpt", "message", "eml",
                                                          "auth", "tls", "checks", "expect"]) {
            switch k {
            case "name": name = rd.string(v, k) ?? name
            case "client":
                if let s = rd.string(v, k) {
                    if let ip = IPAddress(s) { input.clientIP = ip } else { rd.fail(v, "'\(s)' is not an IP address") }
                }
            case "ptr": input.clientPTR = rd.string(v, k)
            case "helo": input.helo = rd.string(v, k)
            case "verb": if let s = rd.string(v, k) { input.heloVerb = s.uppercased() }
            case "from":
                if let s = rd.string(v, k) {
                    let t = s.trimmingCharacters(in: CharacterSet(charactersIn: "<>"))
                    if t.isEmpty { input.sender = .null }
                    else if let m = try? AddressParser.parseMailbox(Substring(t), allowUTF8: true) { input.sender = .mailbox(m) }
                    else { rd.fail(v, "'\(s)' is not an address") }
                }
            case "rcpt":
                if let l = rd.strings(v, k) {
                    for (s, n) in l {
                        let t = s.trimmingCharacters(in: CharacterSet(charactersIn: "<>"))
                        if let m = try? AddressParser.parseMailbox(Substring(t), allowUTF8: true) { input.recipients.append(m) }
                        else if t.lowercased() == "postmaster" { input.recipients.append(Mailbox(localPart: "postmaster", domain: "")) }
                        else { rd.fail(n, "'\(s)' is not an address") }
                    }
                }
            case "message": if let s = rd.string(v, k) { input.message = Array(s.utf8) }
            case "eml":
                if let s = rd.string(v, k) {
                    let p = s.hasPrefix("/") ? s : (dir as NSString).appendingPathComponent(s)
                    if let d = FileManager.default.contents(atPath: p) { input.message = Array(d) } else { rd.fail(v, "cannot read '\(s)'") }
                }
            case "auth": input.authenticatedUser = rd.string(v, k)
            case "tls": input.tls = rd.bool(v, k) ?? false
            case "checks":
                for (check, cv) in rd.mapping(v, "checks", allowed: policy.checks.map(\.check.name)) {
                    if let inj = readInjected(check, cv, decls: decls, reader: &rd) { input.injected[check] = inj }
                }
            case "expect":
                for (ek, ev) in rd.mapping(v, "expect", allowed: expectKeys) {
                    if ek == "rules" || ek == "headers" || ek == "would", let seq = ev.sequence {
                        expect.append((ek, seq.compactMap(\.string).joined(separator: ek == "rules" ? ", " : "; ")))
                    } else if let s = ev.scalar?.string {
                        if ek == "action", !["accept", "reject", "tempfail"].contains(s) { rd.fail(ev, "'action' must be accept, reject or tempfail") }
                        if ek == "stage", Stage(rawValue: s) == nil { rd.fail(ev, "unknown stage '\(s)'") }
                        expect.append((ek, s))
                    } else {
                        rd.fail(ev, "'\(ek)' must be a value or a list")
                    }
                }
            default: break
            }
        }
        if expect.isEmpty { rd.fail(node, "test \"\(name)\" expects nothing: add 'expect:' (action, stage, reply, score, rules, headers, would)") }
        guard rd.diagnostics.count == before else { return nil }
        return PolicyTestCase(name: name, line: node.mark?.line ?? 0, input: input, expect: expect)
    }

    static func readInjected(_ check: String, _ n: Node, decls: [String: FactDecl], reader rd: inout YAMLReader) -> InjectedResult? {
        var inj = InjectedResult(result: "pass")
        for (k, v) in rd.mapping(n, "checks.\(check)", allowed: ["result", "reason", "score", "reject", "tempfail", "error", "facts"]) {
            switch k {
            case "result": inj.result = rd.string(v, k) ?? inj.result
            case "reason": inj.reason = rd.string(v, k)
            case "score": inj.score = rd.number(v, k) ?? 0
            case "reject", "tempfail":
                // "550 5.7.1 text"
                if let s = rd.string(v, k) {
                    let parts = s.split(separator: " ", maxSplits: 2).map(String.init)
                    if parts.count >= 2, let code = Int(parts[0]) {
                        let r = SMTPReply(code, parts[1], parts.count > 2 ? parts[2] : "")
                        inj.action = k == "reject" ? .reject(r) : .tempfail(r)
                    } else {
                        rd.fail(v, "'\(k)' is a reply like \"550 5.7.1 text\"")
                    }
                }
            case "error": inj.backendError = rd.bool(v, k) ?? false
            case "facts":
                for (fk, fv) in rd.mapping(v, "facts", allowed: decls.keys.filter { $0.hasPrefix(check + ".") }.map { String($0.dropFirst(check.count + 1)) }.sorted()) {
                    guard let d = decls["\(check).\(fk)"] else { continue }
                    if let val = factValue(fv, d.type, reader: &rd) { inj.facts[fk] = val }
                }
            default: break
            }
        }
        return inj
    }

    static func factValue(_ n: Node, _ t: FactType, reader rd: inout YAMLReader) -> FactValue? {
        switch t {
        case .bool: return rd.bool(n, "fact").map(FactValue.bool)
        case .number: return rd.number(n, "fact").map(FactValue.number)
        case .string: return rd.string(n, "fact").map(FactValue.string)
        case .ip:
            guard let s = rd.string(n, "fact"), let ip = IPAddress(s) else { rd.fail(n, "an IP address is needed"); return nil }
            return .ip(ip)
        case .set: return rd.strings(n, "fact").map { FactValue.strings($0.map(\.0)) }
        case .keyed(let inner):
            var m: [String: FactValue] = [:]
            guard let map = n.mapping else { rd.fail(n, "a mapping of keys to values is needed"); return nil }
            for (k, v) in map {
                guard let key = k.string else { continue }
                if let val = factValue(v, inner, reader: &rd) { m[key.lowercased()] = val }
            }
            return .keyed(m)
        }
    }
}
