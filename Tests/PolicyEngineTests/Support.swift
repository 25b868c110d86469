import Foundation
import Testing
@testable import PolicyEngine
import Checks
import SMTPProtocol
import DNSResolver

/// A directory of policy files for one test.
struct PolicyDir {
    let path: String

    init(_ files: [String: String]) throws {
        path = NSTemporaryDirectory() + "mg-policy-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (name, text) in files { try write(name, text) }
    }

    func write(_ name: String, _ text: String) throws {
        let full = path + "/" + name
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }

    func load(_ name: String = "p.yaml", factory: CheckFactory = TestFactory()) throws -> CompiledPolicy {
        try PolicyLoader.load(path: path + "/" + name, factory: factory, checkTimeout: .milliseconds(300))
    }

    /// The diagnostics of a policy that must not compile, with the directory cut off.
    func errors(_ name: String = "p.yaml") -> [String] {
        do {
            _ = try load(name)
            return ["compiled"]
        } catch let e as PolicyErrors {
            return e.diagnostics.map { $0.description.replacingOccurrences(of: path + "/", with: "") }
        } catch {
            return ["\(error)"]
        }
    }

    /// A policy of the given rules with the size and helo checks.
    static func rules(_ rules: String, policy: String = "") throws -> PolicyDir {
        try PolicyDir(["p.yaml": "name: t\nchecks: {size: {}, helo: {reject: false, score: 0}}\nrules: [r.rules]\n" + policy,
                       "r.rules": rules])
    }
}

/// The gateway's checks plus test checks with a backend that fails or is slow.
struct TestFactory: CheckFactory {
    var catalog: [CheckInfo] {
        CheckCatalog().catalog + [
            CheckInfo(name: "flaky", stages: [.connect], results: ["pass", "listed"],
                      facts: [FactDecl("flaky.zones", .set, .connect, "zones"), FactDecl("flaky.pass", .keyed(.bool), .connect, "pass by domain")],
                      defaultOnError: .pass),
            CheckInfo(name: "slow", stages: [.rcpt], results: ["pass"], defaultOnError: .pass),
        ]
    }
    func make(_ name: String, settings: Yams.Node?, reader: inout YAMLReader) -> (any Check)? {
        switch name {
        case "flaky": return FlakyCheck()
        case "slow": return SlowCheck()
        default: return CheckCatalog().make(name, settings: settings, reader: &reader)
        }
    }
}

import Yams

/// Its backend is down when the client is 192.0.2.66; lists 192.0.2.1 in zone "bl.test".
struct FlakyCheck: Check {
    let name = "flaky"
    let stages: Set<Stage> = [.connect]
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        if context.clientIP == IPAddress("192.0.2.66")! { return .failure("backend down") }
        if context.clientIP == IPAddress("192.0.2.67")! {
            // The process is out of DNS capacity (as when descriptors run out).
            var c = ResolverConfig(servers: [NameServer("127.0.0.1:9")!])
            c.maxInFlight = 0
            return .failure("lookup: \(await DNSResolver(config: c).query("x.test", .a))")
        }
        if context.clientIP == IPAddress("192.0.2.1")! {
            return CheckResult(.continue, result: "listed", facts: ["zones": .strings(["bl.test"]), "pass": .keyed(["example.com": .bool(true)])])
        }
        return .pass()
    }
}

/// Never answers within any budget.
struct SlowCheck: Check {
    let name = "slow"
    let stages: Set<Stage> = [.rcpt]
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        try? await Task.sleep(for: .seconds(30))
        return CheckResult(.accept, result: "pass")
    }
}

/// Runs a session through a policy.
func simulate(_ p: CompiledPolicy, ip: String = "198.51.100.7", helo: String? = "mail.example.net", from: String? = "a@example.net",
              rcpt: [String] = ["bob@example.org"], message: String? = "From: a@example.net\nDate: x\nMessage-ID: <1@x>\n\nhi\n",
              configure: (inout SimulationInput) -> Void = { _ in }) async -> SimulationResult {
    var input = SimulationInput(clientIP: IPAddress(ip)!)
    input.helo = helo
    input.localDomains = ["example.org"]
    if let f = from {
        input.sender = f.isEmpty ? .null : .mailbox(try! AddressParser.parseMailbox(Substring(f), allowUTF8: true))
    }
    input.recipients = rcpt.map { try! AddressParser.parseMailbox(Substring($0), allowUTF8: true) }
    input.message = message.map { Array($0.utf8) }
    configure(&input)
    return await PolicySimulator.run(p, input)
}
