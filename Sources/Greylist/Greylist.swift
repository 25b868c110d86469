/// Greylist: the greylisting triplet store and its rules (delay, retry window, lifetime,
/// auto-allowlist), with an embedded SQLite store and a shared PostgreSQL store.
///
/// The decision for a triplet is one pure function (`GreylistRules.decide`), so that both
/// stores behave the same; each store applies it inside one transaction, so that concurrent
/// sessions (and, with PostgreSQL, several gateways) never both see "new" for one triplet
/// twice in a way that matters. Time is a number of seconds the caller passes in, so that
/// tests move it without sleeping.
import Foundation
import NIOConcurrencyHelpers
import SMTPProtocol

public struct GreylistSettings: Sendable, Equatable {
    /// Seconds a new triplet must wait before a retry passes.
    public var delay = 300
    /// Seconds after the first sight within which a retry passes.
    public var window = 86_400
    /// Seconds a passed triplet (and an auto-allowed client) is kept unused.
    public var lifetime = 36 * 86_400
    /// Passes after which a client network is exempt; 0 turns the auto-allowlist off.
    public var autoAllowAfter = 5
    public init() {}
}

public enum GreylistState: String, Sendable, CaseIterable {
    /// First sight (or the window passed): 451.
    case new
    /// Retried before the delay: 451.
    case early
    /// Retried within the window: passes from now on.
    case passed
    /// Passed before and still within its lifetime.
    case known
    /// The client is on the auto-allowlist or was allowed by hand.
    case allowed
}

public struct GreylistDecision: Sendable, Equatable {
    public var state: GreylistState
    /// Seconds until a retry passes (new, early).
    public var remaining: Int
    public var isDelay: Bool { state == .new || state == .early }
}

/// A triplet's stored state.
public struct TripletRow: Sendable, Equatable {
    public var firstSeen: Int64
    public var lastSeen: Int64
    public var passedAt: Int64?
    public var hits: Int64
}

public struct GreylistEntry: Sendable {
    public var key: String
    public var client: String
    public var firstSeen: Int64
    public var lastSeen: Int64
    public var passedAt: Int64?
    public var hits: Int64
}

public struct GreylistStats: Sendable, Equatable {
    public init(pending: Int = 0, passed: Int = 0, clients: Int = 0, allowedClients: Int = 0) {
        self.pending = pending
        self.passed = passed
        self.clients = clients
        self.allowedClients = allowedClients
    }
    public var pending = 0
    public var passed = 0
    public var clients = 0
    public var allowedClients = 0
}

/// What a store must do; both stores apply `GreylistRules` in one transaction.
public protocol GreylistStore: Sendable {
    var name: String { get }
    func check(key: String, client: String, now: Int64, settings: GreylistSettings) async throws -> GreylistDecision
    /// Puts a client on the allowlist by hand.
    func allow(client: String, now: Int64) async throws
    /// Deletes what is past its time; returns the number of rows removed.
    func purge(now: Int64, settings: GreylistSettings) async throws -> Int
    func list(limit: Int) async throws -> [GreylistEntry]
    func stats(settings: GreylistSettings) async throws -> GreylistStats
    /// Gets ready at start (PostgreSQL: creates the schema); a failure is retried on use.
    func prepare() async throws
    func close() async
}

extension GreylistStore {
    public func prepare() async throws {}
}

/// The rules, as one pure function of a triplet's row and the time.
public enum GreylistRules {
    public enum Write: Sendable, Equatable {
        case insert
        /// first_seen = last_seen = now, passed_at = NULL
        case restart
        case touch
        case pass
        case none
    }

    public static func decide(_ row: TripletRow?, now: Int64, _ s: GreylistSettings) -> (GreylistDecision, Write, bumpClient: Bool) {
        guard let r = row else { return (GreylistDecision(state: .new, remaining: s.delay), .insert, false) }
        if r.passedAt != nil {
            if r.lastSeen + Int64(s.lifetime) < now { return (GreylistDecision(state: .new, remaining: s.delay), .restart, false) }
            return (GreylistDecision(state: .known, remaining: 0), .touch, true)
        }
        if now < r.firstSeen + Int64(s.delay) {
            return (GreylistDecision(state: .early, remaining: Int(r.firstSeen + Int64(s.delay) - now)), .none, false)
        }
        if now <= r.firstSeen + Int64(s.window) {
            return (GreylistDecision(state: .passed, remaining: 0), .pass, true)
        }
        return (GreylistDecision(state: .new, remaining: s.delay), .restart, false)
    }
}

/// The triplet: client network (or verified reverse domain), normalised sender, recipient.
public enum GreylistKey {
    public struct Options: Sendable, Equatable {
        public var v4Prefix = 24
        public var v6Prefix = 64
        public var byReverseDomain = false
        public init() {}
    }

    /// The client part: its network, or with `byReverseDomain` the parent domain of its
    /// verified reverse name (mail-01.pool.example.net → pool.example.net).
    public static func client(_ ip: IPAddress, ptr: String?, _ o: Options) -> String {
        if o.byReverseDomain, let p = ptr?.lowercased(), let dot = p.firstIndex(of: "."), p[p.index(after: dot)...].contains(".") {
            return "dns:" + p[p.index(after: dot)...]
        }
        let net = IPNetwork(address: ip, prefix: ip.isIPv4 ? o.v4Prefix : o.v6Prefix)
        return masked(net).description
    }

    public static func masked(_ n: IPNetwork) -> IPNetwork {
        switch n.address {
        case .v4(let v):
            let mask: UInt32 = n.prefix == 0 ? 0 : UInt32.max << (32 - UInt32(n.prefix))
            return IPNetwork(address: .v4(v & mask), prefix: n.prefix)
        case .v6(let hi, let lo):
            let p = n.prefix
            let mh: UInt64 = p >= 64 ? .max : (p == 0 ? 0 : UInt64.max << (64 - UInt64(p)))
            let ml: UInt64 = p <= 64 ? 0 : (p == 128 ? .max : UInt64.max << (128 - UInt64(p)))
            return IPNetwork(address: .v6(hi & mh, lo & ml), prefix: p)
        }
    }

    /// Lower case; BATV (prvs=…=, btv1==…==), SRS (SRS0/SRS1, keyed by the forwarder) and
    /// per-message local parts (+extensions, digit runs as in VERP bounces) normalised, so that
    /// a retry of the same mail gives the same key.
    public static func sender(_ s: String) -> String {
        var addr = s.lowercased()
        guard let at = addr.lastIndex(of: "@") else { return addr }
        var local = String(addr[..<at])
        let domain = String(addr[addr.index(after: at)...])
        if local.hasPrefix("srs0=") || local.hasPrefix("srs1=") { return "srs@" + domain }
        for prefix in ["prvs=", "msprvs1=", "msprvs2="] where local.hasPrefix(prefix) {
            // prvs=TAG=user
            let rest = local.dropFirst(prefix.count)
            if let eq = rest.firstIndex(of: "=") { local = String(rest[rest.index(after: eq)...]) }
        }
        if local.hasPrefix("btv1=="), let end = local.range(of: "==", range: local.index(local.startIndex, offsetBy: 6)..<local.endIndex) {
            local = String(local[end.upperBound...])
        }
        if let plus = local.firstIndex(of: "+") { local = String(local[..<plus]) }
        var out = ""
        var inDigits = false
        for c in local {
            if c.isASCII && c.isNumber {
                if !inDigits { out.append("#") }
                inDigits = true
            } else {
                out.append(c)
                inDigits = false
            }
        }
        addr = out + "@" + domain
        return addr
    }

    public static func key(client: String, sender: String, recipient: String) -> String {
        "\(client)/\(sender)/\(recipient.lowercased())"
    }
}

/// Where the triplets live and how they are keyed and timed: one set for every policy of a
/// gateway (and for every gateway that shares a PostgreSQL store), so that they agree.
public struct GreylistConfig: Sendable, Equatable {
    public enum Store: String, Sendable, CaseIterable {
        /// A file under var/ (the default).
        case sqlite
        /// A PostgreSQL database shared by several gateways.
        case postgresql
        /// In memory, gone at exit: policy tests and simulations.
        case memory
    }
    public var store: Store = .sqlite
    public var path = "var/greylist.sqlite"
    /// postgres://user:password@host:port/database
    public var url: String?
    public var settings = GreylistSettings()
    public var key = GreylistKey.Options()
    /// Seconds between purges of entries past their time; 0 = never.
    public var purgeInterval = 3600
    public init() {}
    public static var memory: GreylistConfig {
        var c = GreylistConfig()
        c.store = .memory
        return c
    }
}

/// The greylist as the checks and the CLI use it: the store (opened on first use, which for
/// a gateway is at start when one of its policies greylists), the settings and the clock.
public final class GreylistService: Sendable {
    public let config: GreylistConfig
    /// Seconds since the epoch; tests pass a clock they move.
    public let clock: @Sendable () -> Int64
    private let box = NIOLockedValueBox<(any GreylistStore)?>(nil)
    /// Told each check's seconds and whether the store answered (the gateway's metrics).
    let observer: (@Sendable (_ seconds: Double, _ ok: Bool) -> Void)?

    public init(config: GreylistConfig = .memory, clock: (@Sendable () -> Int64)? = nil,
                observer: (@Sendable (_ seconds: Double, _ ok: Bool) -> Void)? = nil) {
        self.config = config
        self.clock = clock ?? { Int64(Date().timeIntervalSince1970) }
        self.observer = observer
    }

    /// The store, opened now if it is not yet.
    public func store() throws -> any GreylistStore {
        try box.withLockedValue { s in
            if let s { return s }
            let new: any GreylistStore
            switch config.store {
            case .sqlite: new = try SQLiteGreylistStore(path: config.path)
            case .memory: new = try SQLiteGreylistStore(path: ":memory:")
            case .postgresql:
                guard let url = config.url else { throw GreylistStoreError(message: "greylist store postgresql needs 'url'") }
                new = try PostgresGreylistStore(url: url)
            }
            s = new
            return new
        }
    }

    /// The store if something has opened it.
    public var openedStore: (any GreylistStore)? { box.withLockedValue { $0 } }

    /// The key of a triplet, and its client part.
    public func key(ip: IPAddress, ptr: String?, sender: String, recipient: String) -> (key: String, client: String) {
        let client = GreylistKey.client(ip, ptr: ptr, config.key)
        return (GreylistKey.key(client: client, sender: GreylistKey.sender(sender), recipient: recipient), client)
    }

    public func check(key: String, client: String) async throws -> GreylistDecision {
        let began = ContinuousClock.now
        func observe(_ ok: Bool) { observer?((ContinuousClock.now - began).inSeconds, ok) }
        do {
            let r = try await store().check(key: key, client: client, now: clock(), settings: config.settings)
            observe(true)
            return r
        } catch {
            observe(false)
            throw error
        }
    }

    public func purge() async throws -> Int {
        try await store().purge(now: clock(), settings: config.settings)
    }

    /// Opens the store and gets it ready (the gateway calls it at start when a policy
    /// greylists, without waiting: a database that is down must not stop the gateway).
    public func prepare() async throws {
        try await store().prepare()
    }

    public func close() async {
        let s = box.withLockedValue { s in
            defer { s = nil }
            return s
        }
        await s?.close()
    }
}
