import ArgumentParser
import Foundation
import Gateway
import PolicyEngine
import Checks
import SMTPProtocol

/// Compiles a policy and prints its diagnostics; true when it is valid.
func checkPolicy(_ path: String, quiet: Bool = false) -> Bool {
    do {
        let p = try PolicyLoader.load(path: path, factory: CheckCatalog())
        if !quiet {
            print("\(path): OK: policy \(p.name) version \(p.version), \(p.checks.count) checks, \(p.rules.count) rules\(p.monitor ? ", monitor mode" : "")")
        }
        return true
    } catch let e as PolicyErrors {
        for d in e.diagnostics { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
        return false
    } catch {
        FileHandle.standardError.write(Data("\(path): \(error)\n".utf8))
        return false
    }
}

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Lint, test and simulate policies.",
        subcommands: [Check.self, Test.self, Simulate.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Compile policies and report every error as file:line:column.")
        @Argument(help: "Policy files (default: policies/*.yaml).") var files: [String] = []

        func run() throws {
            var list = files
            if list.isEmpty {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: "policies")) ?? []
                list = names.filter { $0.hasSuffix(".yaml") && !$0.hasSuffix(".test.yaml") }.sorted().map { "policies/\($0)" }
            }
            guard !list.isEmpty else { throw ValidationError("no policy files given and none in policies/") }
            var ok = true
            for f in list where !checkPolicy(f) { ok = false }
            if !ok { throw ExitCode(2) }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the policy tests (*.test.yaml) under a directory.")
        @Argument(help: "A directory or a test file (default: policies).") var path: String = "policies"
        @Flag(name: .shortAndLong, help: "Print the trace of every test, not only of failures.") var verbose = false

        func run() async throws {
            let files = PolicyTestRunner.findTests(path)
            guard !files.isEmpty else {
                FileHandle.standardError.write(Data("no *.test.yaml files under \(path)\n".utf8))
                throw ExitCode(1)
            }
            var passed = 0, failed = 0, broken = 0
            for f in files {
                do {
                    for o in try await PolicyTestRunner.run(file: f, factory: { CheckCatalog(resolver: $0) }) {
                        if o.passed {
                            passed += 1
                            print("PASS \(o.file):\(o.line) \(o.name)")
                            if verbose { print(o.trace.split(separator: "\n", omittingEmptySubsequences: false).map { "     \($0)" }.joined(separator: "\n")) }
                        } else {
                            failed += 1
                            print("FAIL \(o.file):\(o.line) \(o.name)")
                            for d in o.differences { print("     \(d)") }
                            print(o.trace.split(separator: "\n", omittingEmptySubsequences: false).map { "     | \($0)" }.joined(separator: "\n"))
                        }
                    }
                } catch let e as PolicyErrors {
                    broken += 1
                    print("ERROR \(f)")
                    for d in e.diagnostics { print("     \(d)") }
                }
            }
            print("\n\(passed) passed, \(failed) failed\(broken > 0 ? ", \(broken) files with errors" : "")")
            if failed > 0 || broken > 0 { throw ExitCode(1) }
        }
    }

    struct Simulate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a session through a policy without sending anything, and explain the verdict stage by stage.")
        @Option(help: "Policy file (default: the configuration's, else policies/default.yaml).") var policy: String?
        @Option(help: "Gateway configuration, for local domains, authorizedAddresses and the policy.") var config: String?
        @Option(help: "Client address.") var ip: String
        @Option(help: "Verified reverse name of the client.") var ptr: String?
        @Option(help: "HELO/EHLO name.") var helo: String?
        @Option(help: "Envelope sender ('' for <>).") var from: String?
        @Option(help: "Recipient (repeatable).") var rcpt: [String] = []
        @Option(help: "Message file (RFC 5322).") var eml: String?
        @Option(help: "Authenticated user.") var auth: String?
        @Option(help: "DNS server IP[:PORT] for the checks that ask DNS (default: the configuration's, else /etc/resolv.conf).") var dns: String?

        func run() async throws {
            let cfg = try loadConfig(config)
            guard let ip = IPAddress(ip) else { throw ValidationError("--ip: '\(self.ip)' is not an IP address") }
            let path = policy ?? cfg.policy ?? "policies/default.yaml"
            let compiled: CompiledPolicy
            do {
                compiled = try PolicyLoader.load(path: path, factory: CheckCatalog(resolver: try resolver(dns: dns, config: cfg)),
                                                 checkTimeout: .seconds(cfg.checkTimeout))
            } catch let e as PolicyErrors {
                for d in e.diagnostics { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
                throw ExitCode(2)
            }
            var input = SimulationInput(clientIP: ip)
            input.clientPTR = ptr
            input.helo = helo
            input.authenticatedUser = auth
            input.localDomains = cfg.domains
            input.authorizedAddresses = cfg.listeners.first?.authorizedAddresses ?? []
            input.maxMessageSize = cfg.listeners.first?.maxMessageOctets ?? 0
            if let f = from {
                let t = f.trimmingCharacters(in: CharacterSet(charactersIn: "<>"))
                if t.isEmpty { input.sender = .null } else {
                    guard let m = try? AddressParser.parseMailbox(Substring(t), allowUTF8: true) else { throw ValidationError("--from: not an address") }
                    input.sender = .mailbox(m)
                }
            }
            for r in rcpt {
                let t = r.trimmingCharacters(in: CharacterSet(charactersIn: "<>"))
                guard let m = try? AddressParser.parseMailbox(Substring(t), allowUTF8: true) else { throw ValidationError("--rcpt: '\(r)' is not an address") }
                input.recipients.append(m)
            }
            if let e = eml {
                guard let d = FileManager.default.contents(atPath: e) else { throw ValidationError("--eml: cannot read \(e)") }
                input.message = Array(d)
            }
            let result = await PolicySimulator.run(compiled, input)
            print(PolicySimulator.describe(result, policy: compiled), terminator: "")
        }
    }
}
