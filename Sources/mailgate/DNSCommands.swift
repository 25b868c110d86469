import ArgumentParser
import Foundation
import Gateway
import PolicyEngine
import Checks
import DNSResolver
import SMTPProtocol
import MailAuth

/// The resolver of `--dns`, else of the configuration, else of /etc/resolv.conf.
func resolver(dns: String?, config: GatewayConfig) throws -> DNSResolver {
    if let d = dns {
        guard let ns = NameServer(d) else { throw ValidationError("--dns: want IP or IP:PORT") }
        return DNSResolver(servers: [ns], timeout: config.dns.timeout)
    }
    var rc = ResolverConfig(servers: config.dns.servers.isEmpty ? NameServer.fromResolvConf() : config.dns.servers.compactMap { NameServer($0) })
    rc.timeout = config.dns.timeout
    rc.attempts = config.dns.attempts
    return DNSResolver(config: rc)
}

struct DNSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dns", abstract: "Ask DNS as the gateway does.",
                                                    subcommands: [Query.self, ServeFixtures.self, Bench.self])

    struct Query: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask one question through the gateway's resolver.")
        @Argument(help: "The name.") var name: String
        @Argument(help: "A, AAAA, TXT, MX, PTR, CNAME, NS (a PTR question may give an IP address).") var type: String = "A"
        @Option(help: "Nameserver IP[:PORT] (default: the configuration's, else /etc/resolv.conf).") var server: String?
        @Option(help: "Gateway configuration, for its dns settings.") var config: String?

        func run() async throws {
            guard let t = DNSType(name: type) else { throw ValidationError("unknown type \(type)") }
            let cfg = try loadConfig(config)
            let r = try resolver(dns: server, config: cfg)
            var name = self.name
            if t == .ptr, let ip = IPAddress(name) {
                name = DNSResolver.reversedName(ip, zone: ip.isIPv4 ? "in-addr.arpa" : "ip6.arpa")
            }
            let start = ContinuousClock.now
            let answer = await r.query(name, t)
            let ms = (ContinuousClock.now - start).components.attoseconds / 1_000_000_000_000_000
            switch answer {
            case .records(let recs):
                for rec in recs { print("\(canonicalName(name)) \(t) \(rec)") }
            case .nxdomain: print("\(canonicalName(name)) \(t): NXDOMAIN")
            case .noData: print("\(canonicalName(name)) \(t): no data")
            case .tempFail(let why): print("\(canonicalName(name)) \(t): temporary failure: \(why)")
            }
            FileHandle.standardError.write(Data(";; \(ms) ms via \(r.config.servers.map(\.description).joined(separator: ", "))\n".utf8))
            if answer.isTempFail { throw ExitCode(3) }
        }
    }

    struct ServeFixtures: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "serve-fixtures",
                                                        abstract: "Answer DNS on 127.0.0.1 from a fixture file (for tests and benchmarks).")
        @Argument(help: "Fixture file (see Sources/DNSResolver/FixtureServer.swift).") var file: String

        func run() async throws {
            let text = try CLIError.readText(file)
            let s: DNSFixtureServer
            do { s = try DNSFixtureServer(fixtures: text) } catch { throw CLIError.failed(CLIError.Message("\(file): \(error)")) }
            try await s.start()
            FileHandle.standardOutput.write(Data("127.0.0.1:\(s.port)\n".utf8))
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
    }
}

extension DNSCommand {
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure the resolver against a DNS server: queries/s cold and cached, and DNSBL lookups per connection.")
        @Option(help: "Nameserver IP[:PORT] (a fixture server with '*.bench.test' and the DNSBL zones).") var server: String
        @Option(help: "Distinct names to ask.") var names = 5000
        @Option(help: "Questions in flight at once.") var concurrency = 50
        @Option(help: "DNSBL zones to ask per simulated connection (repeatable).") var zone: [String] = []
        @Option(help: "Simulated connections for the DNSBL measurement.") var connections = 1000

        func run() async throws {
            guard let ns = NameServer(server) else { throw ValidationError("--server: want IP[:PORT]") }
            var rc = ResolverConfig(servers: [ns])
            rc.cacheSize = names * 2
            let r = DNSResolver(config: rc)
            func round(_ label: String) async {
                let start = ContinuousClock.now
                let failures = await withTaskGroup(of: Int.self) { g in
                    var next = 0, failed = 0
                    for _ in 0..<min(concurrency, names) {
                        let i = next; next += 1
                        g.addTask { await r.query("q\(i).bench.test", .a).isTempFail ? 1 : 0 }
                    }
                    while let f = await g.next() {
                        failed += f
                        if next < names {
                            let i = next; next += 1
                            g.addTask { await r.query("q\(i).bench.test", .a).isTempFail ? 1 : 0 }
                        }
                    }
                    return failed
                }
                let secs = Double((ContinuousClock.now - start).components.attoseconds) / 1e18 + Double((ContinuousClock.now - start).components.seconds)
                print(String(format: "resolver %@: %d queries in %.2f s = %.0f queries/s (%d failed)", label, names, secs, Double(names) / secs, failures))
            }
            await round("cold  ")
            await round("cached")
            let s = r.statistics
            print("  sent to the server: \(s.sent), answered from cache: \(s.cacheHits)")
            guard !zone.isEmpty else { return }
            var o = DNSBLCheck.Options()
            o.zones = zone.map { DNSBLCheck.Zone(zone: $0) }
            let check = DNSBLCheck(options: o, resolver: DNSResolver(servers: [ns]), health: ZoneHealth())
            var times: [Double] = []
            for i in 0..<connections {
                let ip = IPAddress.v4(0xc000_0000 | UInt32(i + 1))   // distinct clients: nothing cached
                let start = ContinuousClock.now
                _ = await check.lookup(ip)
                let d = ContinuousClock.now - start
                times.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
            }
            times.sort()
            let avg = times.reduce(0, +) / Double(times.count)
            print(String(format: "dnsbl, %d zones in parallel, %d distinct clients: mean %.2f ms, p50 %.2f ms, p99 %.2f ms per connection",
                         zone.count, connections, avg, times[times.count / 2], times[min(times.count - 1, times.count * 99 / 100)]))
        }
    }
}

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Run one check by hand.", subcommands: [DNSBL.self, SPF.self, DKIM.self])

    struct DNSBL: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "dnsbl", abstract: "Ask each DNSBL zone about an address and print its answer.")
        @Argument(help: "Client address.") var ip: String
        @Option(help: "Zone (repeatable; default: the zones of the policy's dnsbl check).") var zone: [String] = []
        @Option(help: "Policy file whose dnsbl zones to ask.") var policy: String?
        @Option(help: "Gateway configuration (dns settings, policy).") var config: String?
        @Option(help: "Nameserver IP[:PORT].") var dns: String?

        func run() async throws {
            guard let addr = IPAddress(ip) else { throw ValidationError("'\(ip)' is not an IP address") }
            let cfg = try loadConfig(config)
            let r = try resolver(dns: dns, config: cfg)
            var options = DNSBLCheck.Options()
            if zone.isEmpty {
                guard let path = policy ?? cfg.policy else { throw ValidationError("give --zone, or a --policy (or --config) with a dnsbl check") }
                let p: CompiledPolicy
                do { p = try PolicyLoader.load(path: path, factory: CheckCatalog(resolver: r)) } catch let e as PolicyErrors {
                    for d in e.diagnostics { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
                    throw ExitCode(2)
                }
                guard let c = p.checks.compactMap({ $0.check as? DNSBLCheck }).first else { throw ValidationError("policy \(p.name) has no dnsbl check") }
                options = c.options
            } else {
                options.zones = zone.map { DNSBLCheck.Zone(zone: $0) }
            }
            let check = DNSBLCheck(options: options, resolver: r, health: ZoneHealth())
            let verdicts = await check.lookup(addr)
            var listed = false
            for (z, v) in zip(options.zones, verdicts) {
                let q = DNSResolver.reversedName(addr, zone: z.zone)
                switch v {
                case .listed(let label, let txt):
                    listed = listed || z.kind == .block
                    print("\(z.zone): listed (\(label))\(txt.map { " \"\($0)\"" } ?? "") [\(z.kind.rawValue), \(q)]")
                case .notListed: print("\(z.zone): not listed [\(q)]")
                case .error(let e): print("\(z.zone): error: \(e) [\(q)]")
                case .disabled(let why): print("\(z.zone): disabled: \(why)")
                }
            }
            if listed { throw ExitCode(1) }
        }
    }
}

extension CheckCommand {
    struct SPF: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "spf",
            abstract: "Evaluate SPF (RFC 7208) and print the result, the explanation and the trace of every term and lookup.")
        @Option(help: "Client address.") var ip: String
        @Option(help: "HELO/EHLO name.") var helo: String
        @Option(help: "Envelope sender ('' for <>: postmaster@HELO); omit to check the HELO identity.") var from: String?
        @Option(help: "Nameserver IP[:PORT].") var dns: String?
        @Option(help: "Gateway configuration (dns settings).") var config: String?

        func run() async throws {
            guard let addr = IPAddress(ip) else { throw ValidationError("'\(ip)' is not an IP address") }
            let cfg = try loadConfig(config)
            let evaluator = SPFEvaluator(resolver: try resolver(dns: dns, config: cfg), receiver: cfg.listeners.first?.resolvedHelloName ?? "localhost")
            let sender = from.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "<>")) }
            let o = await evaluator.check(ip: addr, sender: sender, helo: helo)
            print("result: \(o.result.rawValue)")
            print("identity: \(sender == nil ? "helo \(helo)" : "mailfrom \(sender!.isEmpty ? "postmaster@\(helo)" : sender!)")")
            print("domain: \(o.domain)")
            if let m = o.mechanism { print("mechanism: \(m)") }
            if let e = o.explanation { print("explanation: \(e)") }
            if let p = o.problem { print("problem: \(p)") }
            print("lookups: \(o.lookups) of 10 DNS-querying terms, \(o.voidLookups) of 2 void lookups")
            print("trace:")
            for t in o.trace { print("  \(t)") }
            switch o.result {
            case .pass, .none, .neutral: break
            case .temperror: throw ExitCode(3)
            default: throw ExitCode(1)
            }
        }
    }
}

extension CheckCommand {
    struct DKIM: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "dkim",
            abstract: "Verify every DKIM signature of a message and print each result and reason.")
        @Argument(help: "The message (RFC 5322, LF or CRLF line ends).") var file: String
        @Option(help: "Nameserver IP[:PORT] for the keys.") var dns: String?
        @Option(help: "Gateway configuration (dns settings).") var config: String?
        @Option(help: "Signatures to verify at most.") var max = 5

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            let cfg = try loadConfig(config)
            let v = DKIMVerifier(resolver: try resolver(dns: dns, config: cfg), maxSignatures: max)
            let results = await v.verify(message: Array(data))
            if results.isEmpty { print("no DKIM signature"); throw ExitCode(1) }
            for r in results {
                var line = "d=\(r.domain) s=\(r.selector) a=\(r.algorithm)"
                if let b = r.keyBits { line += " bits=\(b)" }
                if let i = r.identity { line += " i=\(i)" }
                if let l = r.bodyLength { line += " l=\(l)" }
                print("\(line): \(r.result.rawValue) (\(r.reason))")
            }
            if results.contains(where: { $0.result == .pass }) { return }
            throw ExitCode(results.contains(where: { $0.result == .temperror }) ? 3 : 1)
        }
    }
}
