import ArgumentParser
import Foundation
import Gateway
import Greylist
import SMTPProtocol

/// `mailgate greylist …`: the greylist store of a configuration, SQLite or PostgreSQL.
struct GreylistCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "greylist", abstract: "Look at and manage the greylist store.",
                                                    subcommands: [List.self, Allow.self, Purge.self, Stats.self, Bench.self])

    struct StoreOptions: ParsableArguments {
        @Option(help: "Gateway configuration, for its greylist section.") var config: String?
        @Option(help: "Use this SQLite file instead of the configuration's store.") var sqlite: String?
        @Option(help: "Use this PostgreSQL URL instead of the configuration's store.") var postgres: String?

        func service() throws -> GreylistService {
            var g = try loadConfig(config).greylist
            if let p = sqlite { g.store = .sqlite; g.path = p }
            if let u = postgres { g.store = .postgresql; g.url = u }
            if g.store == .memory { throw ValidationError("the configured greylist store is in memory: nothing to look at") }
            return GreylistService(config: g)
        }
    }

    static func date(_ t: Int64) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(t)))
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The most recently used triplets.")
        @OptionGroup var store: StoreOptions
        @Option(help: "At most this many.") var limit = 50

        func run() async throws {
            let g = try store.service()
            let now = g.clock()
            let s = g.config.settings
            for e in try await g.store().list(limit: limit) {
                let state: String
                if e.passedAt != nil { state = "passed" } else if now < e.firstSeen + Int64(s.delay) { state = "waiting \(e.firstSeen + Int64(s.delay) - now)s" } else { state = "retry-due" }
                print("\(e.key)  \(state)  first \(GreylistCommand.date(e.firstSeen))  last \(GreylistCommand.date(e.lastSeen))  passes \(e.hits)")
            }
            await g.close()
        }
    }

    struct Allow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a client on the allowlist: never greylisted again.",
                                                        discussion: "CLIENT is an address (its network under the configured prefixes is allowed), a network in CIDR notation, or with byReverseDomain a reverse-DNS domain.")
        @OptionGroup var store: StoreOptions
        @Argument(help: "Address, CIDR network or domain.") var client: String

        func run() async throws {
            let g = try store.service()
            let key: String
            if let ip = IPAddress(client) {
                // Without a reverse name the key is the address's network.
                key = GreylistKey.client(ip, ptr: nil, g.config.key)
            } else if let net = IPNetwork(client) {
                key = GreylistKey.masked(net).description
            } else if AddressParser.isDomain(Substring(client), allowUTF8: false) {
                key = "dns:" + client.lowercased()
            } else {
                throw ValidationError("'\(client)' is not an address, a network or a domain")
            }
            try await g.store().allow(client: key, now: g.clock())
            print("allowed \(key)")
            await g.close()
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete the entries past their window or lifetime now.")
        @OptionGroup var store: StoreOptions

        func run() async throws {
            let g = try store.service()
            let n = try await g.purge()
            print("removed \(n)")
            await g.close()
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "How many triplets wait, have passed, and how many clients are allowed.")
        @OptionGroup var store: StoreOptions

        func run() async throws {
            let g = try store.service()
            let s = try await g.store().stats(settings: g.config.settings)
            let c = g.config
            print("store            \(c.store.rawValue) \(c.store == .sqlite ? c.path : (c.url.map(GreylistCommand.redact) ?? ""))")
            print("settings         delay \(c.settings.delay)s, window \(c.settings.window)s, lifetime \(c.settings.lifetime)s, auto-allow after \(c.settings.autoAllowAfter) passes")
            print("triplets waiting \(s.pending)")
            print("triplets passed  \(s.passed)")
            print("clients          \(s.clients)")
            print("clients allowed  \(s.allowedClients)")
            await g.close()
        }
    }

    /// The URL without its password.
    static func redact(_ url: String) -> String {
        guard var u = URLComponents(string: url), u.password != nil else { return url }
        u.password = "***"
        return u.string ?? url
    }

    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lookups per second against a store (bench/greylist runs it for both).")
        @OptionGroup var store: StoreOptions
        @Option(help: "Lookups in all.") var count = 20_000
        @Option(help: "Lookups in flight at once.") var concurrency = 16
        @Option(help: "Distinct triplets (the rest are repeats of them).") var triplets = 5_000

        func run() async throws {
            let g = try store.service()
            let store = try g.store()
            let settings = g.config.settings
            let t0 = g.clock()
            let start = ContinuousClock.now
            let per = max(1, count / concurrency)
            let triplets = max(1, self.triplets)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<concurrency {
                    group.addTask {
                        for i in 0..<per {
                            let n = (w * per + i) % triplets
                            let client = "198.51.\(n % 250).0/24"
                            _ = try await store.check(key: "\(client)/bench\(n)@example.net/rcpt@example.org", client: client,
                                                      now: t0 + Int64(i), settings: settings)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let secs = (ContinuousClock.now - start).inSeconds
            let done = per * concurrency
            print("\(g.config.store.rawValue): \(done) lookups, \(concurrency) at once, \(triplets) triplets: \(String(format: "%.2f", secs)) s, \(Int(Double(done) / secs)) lookups/s")
            await g.close()
        }
    }
}
