import NIOConcurrencyHelpers
import SMTPProtocol

/// Failed AUTH attempts per client address across connections, forgotten after a window
/// (an in-memory anvil). Bounded: at most `maxClients` addresses are tracked; past it the
/// oldest entries go first.
final class AuthLimiter: Sendable {
    struct Entry: Sendable { var failures: Int; var since: ContinuousClock.Instant }
    let limit: Int
    let window: Duration
    static let maxClients = 100_000
    private let table = NIOLockedValueBox<[IPAddress: Entry]>([:])

    init(limit: Int, window: Duration) {
        self.limit = limit
        self.window = window
    }

    func isLockedOut(_ ip: IPAddress, now: ContinuousClock.Instant = .now) -> Bool {
        table.withLockedValue { t in
            guard let e = t[ip] else { return false }
            if now - e.since > window { t[ip] = nil; return false }
            return e.failures >= limit
        }
    }

    /// Counts a failure; returns the count within the window.
    @discardableResult
    func recordFailure(_ ip: IPAddress, now: ContinuousClock.Instant = .now) -> Int {
        table.withLockedValue { t in
            var e = t[ip] ?? Entry(failures: 0, since: now)
            if now - e.since > window { e = Entry(failures: 0, since: now) }
            e.failures += 1
            t[ip] = e
            if t.count > Self.maxClients { Self.trim(&t, now: now, window: window) }
            return e.failures
        }
    }

    static func trim(_ t: inout [IPAddress: Entry], now: ContinuousClock.Instant, window: Duration) {
        t = t.filter { now - $0.value.since <= window }
        guard t.count > maxClients else { return }
        let keep = t.sorted { $0.value.since > $1.value.since }.prefix(maxClients * 9 / 10)
        t = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
    }
}
