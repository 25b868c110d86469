import Foundation
import Testing
import SMTPProtocol
import PostgresTestServer
@testable import Greylist

/// The same behaviour from both stores, time moved by hand.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgresql
    var testDescription: String { rawValue }

    func make() async throws -> any GreylistStore {
        switch self {
        case .sqlite:
            return try SQLiteGreylistStore(path: NSTemporaryDirectory() + "mg-grey-" + UUID().uuidString + "/greylist.sqlite")
        case .postgresql:
            let url = try await PostgresServer.url()
            let s = try PostgresGreylistStore(url: url)
            // Each test starts from empty tables.
            try await s.ensureSchema()
            try await s.client.query("TRUNCATE greylist_triplets, greylist_clients")
            return s
        }
    }
}

@Suite(.serialized) struct StoreTests {
    static let t0: Int64 = 1_800_000_000

    @Test(arguments: StoreKind.allCases) func delayWindowAndLifetime(_ kind: StoreKind) async throws {
        let s = try await kind.make()
        var set = GreylistSettings()
        set.autoAllowAfter = 0
        let k = "192.0.2.0/24/a@example.net/b@example.org"
        #expect(try await s.check(key: k, client: "192.0.2.0/24", now: Self.t0, settings: set) == GreylistDecision(state: .new, remaining: 300))
        #expect(try await s.check(key: k, client: "192.0.2.0/24", now: Self.t0 + 100, settings: set) == GreylistDecision(state: .early, remaining: 200))
        #expect(try await s.check(key: k, client: "192.0.2.0/24", now: Self.t0 + 300, settings: set) == GreylistDecision(state: .passed, remaining: 0))
        #expect(try await s.check(key: k, client: "192.0.2.0/24", now: Self.t0 + 400, settings: set).state == .known)
        // Refreshed on use: still known 35 days after the last use…
        #expect(try await s.check(key: k, client: "192.0.2.0/24", now: Self.t0 + 400 + 35 * 86_400, settings: set).state == .known)
        // …but a triplet unused past its lifetime starts over.
        #expect(try await s.check(key: k, client: "192.0.2.0/24", now: Self.t0 + 400 + 35 * 86_400 + 37 * 86_400, settings: set).state == .new)
        // A retry after the window starts over too.
        let k2 = "192.0.2.0/24/c@example.net/b@example.org"
        _ = try await s.check(key: k2, client: "192.0.2.0/24", now: Self.t0, settings: set)
        #expect(try await s.check(key: k2, client: "192.0.2.0/24", now: Self.t0 + 86_401, settings: set).state == .new)
        #expect(try await s.check(key: k2, client: "192.0.2.0/24", now: Self.t0 + 86_401 + 299, settings: set).state == .early)
        await s.close()
    }

    @Test(arguments: StoreKind.allCases) func autoAllowlistAndManualAllow(_ kind: StoreKind) async throws {
        let s = try await kind.make()
        var set = GreylistSettings()
        set.autoAllowAfter = 2
        for i in 0..<2 {
            let k = "198.51.100.0/24/s\(i)@example.net/r@example.org"
            _ = try await s.check(key: k, client: "198.51.100.0/24", now: Self.t0, settings: set)
            #expect(try await s.check(key: k, client: "198.51.100.0/24", now: Self.t0 + 600, settings: set).state == .passed)
        }
        // Two passes: the network is exempt from now on, for any sender.
        #expect(try await s.check(key: "198.51.100.0/24/new@example.com/r@example.org", client: "198.51.100.0/24", now: Self.t0 + 700, settings: set).state == .allowed)
        try await s.allow(client: "203.0.113.0/24", now: Self.t0)
        #expect(try await s.check(key: "203.0.113.0/24/x@y.example/r@example.org", client: "203.0.113.0/24", now: Self.t0, settings: set).state == .allowed)
        let st = try await s.stats(settings: set)
        #expect(st == GreylistStats(pending: 0, passed: 2, clients: 2, allowedClients: 2))
        await s.close()
    }

    @Test(arguments: StoreKind.allCases) func purgeAndList(_ kind: StoreKind) async throws {
        let s = try await kind.make()
        let set = GreylistSettings()
        _ = try await s.check(key: "a", client: "c1", now: Self.t0, settings: set)
        _ = try await s.check(key: "b", client: "c2", now: Self.t0 + 1000, settings: set)
        #expect(try await s.list(limit: 10).map(\.key) == ["b", "a"])
        // "a" is past its window a day later; "b" is not yet.
        #expect(try await s.purge(now: Self.t0 + 86_401, settings: set) == 1)
        #expect(try await s.list(limit: 10).map(\.key) == ["b"])
        await s.close()
    }

    @Test(arguments: StoreKind.allCases) func concurrentFirstSightsOfOneTripletAreOneEntry(_ kind: StoreKind) async throws {
        let s = try await kind.make()
        let set = GreylistSettings()
        let states = try await withThrowingTaskGroup(of: GreylistState.self) { g in
            for _ in 0..<10 { g.addTask { try await s.check(key: "same", client: "c", now: Self.t0, settings: set).state } }
            var out: [GreylistState] = []
            for try await st in g { out.append(st) }
            return out
        }
        #expect(states.filter { $0 == .new }.count == 1)
        #expect(states.filter { $0 == .early }.count == 9)
        #expect(try await s.stats(settings: set).pending == 1)
        await s.close()
    }

    @Test func aKilledProcessLosesNothingItActedOn() async throws {
        // Written, then the store is dropped without closing; a new one sees the entry.
        let path = NSTemporaryDirectory() + "mg-grey-" + UUID().uuidString + "/g.sqlite"
        do {
            let s = try SQLiteGreylistStore(path: path)
            #expect(try await s.check(key: "k", client: "c", now: Self.t0, settings: GreylistSettings()).state == .new)
        }
        let again = try SQLiteGreylistStore(path: path)
        #expect(try await again.check(key: "k", client: "c", now: Self.t0 + 10, settings: GreylistSettings()).state == .early)
    }

    @Test func manyFirstUsesOfAnEmptyPostgreSQLDatabaseCreateTheSchemaOnce() async throws {
        // Two stores (two gateways) on a database without the tables, 16 lookups each at once.
        let base = try await PostgresServer.url()
        let db = "mg_schema_" + String(UInt32.random(in: 0...UInt32.max))
        try await PostgresServer.createDatabase(db)
        let url = String(base[..<base.lastIndex(of: "/")!]) + "/" + db
        let stores = [try PostgresGreylistStore(url: url), try PostgresGreylistStore(url: url)]
        let states = try await withThrowingTaskGroup(of: GreylistState.self) { g in
            for i in 0..<32 {
                g.addTask { try await stores[i % 2].check(key: "k\(i)", client: "c", now: Self.t0, settings: GreylistSettings()).state }
            }
            var out: [GreylistState] = []
            for try await s in g { out.append(s) }
            return out
        }
        #expect(states == Array(repeating: .new, count: 32))
        for s in stores { await s.close() }
    }

    @Test func aPostgreSQLThatIsDownIsAnErrorWithinTheTimeoutNotAHang() async throws {
        // Nothing listens on this port.
        let s = try PostgresGreylistStore(url: "postgres://mailgate@127.0.0.1:\(PostgresServer.freePort())/postgres")
        let start = ContinuousClock.now
        await #expect(throws: GreylistStoreError.self) {
            try await s.check(key: "k", client: "c", now: Self.t0, settings: GreylistSettings())
        }
        #expect(ContinuousClock.now - start < PostgresGreylistStore.timeout + .seconds(5))
        await s.close()
    }

    @Test func keysNormaliseTheSenderAndTheClient() {
        #expect(GreylistKey.sender("PRVS=1234abcd=Alice@Example.NET") == "alice@example.net")
        #expect(GreylistKey.sender("btv1==0a1b2c3d4e==bob@example.net") == "bob@example.net")
        #expect(GreylistKey.sender("SRS0=HHH=TT=orig.example=alice@forwarder.example") == "srs@forwarder.example")
        #expect(GreylistKey.sender("list-bounces+carol=example.org@lists.example") == "list-bounces@lists.example")
        #expect(GreylistKey.sender("bounce-12345-67@mailer.example") == "bounce-#-#@mailer.example")
        var o = GreylistKey.Options()
        #expect(GreylistKey.client(IPAddress("192.0.2.77")!, ptr: nil, o) == "192.0.2.0/24")
        #expect(GreylistKey.client(IPAddress("2001:db8:1:2:3::9")!, ptr: nil, o) == "2001:db8:1:2::/64")
        o.byReverseDomain = true
        #expect(GreylistKey.client(IPAddress("192.0.2.77")!, ptr: "out-7.mail.example.com", o) == "dns:mail.example.com")
        #expect(GreylistKey.client(IPAddress("192.0.2.77")!, ptr: nil, o) == "192.0.2.0/24")
    }
}
