import NIOConcurrencyHelpers
import SMTPProtocol

/// Failed AUTH attempts per client across connections, forgotten after a window (an
/// in-memory anvil, like Postfix's `smtpd_client_auth_rate_limit`). A client is an IPv4
/// address or an IPv6 /64 (one customer's allocation: its addresses are free to rotate).
/// An attempt is reserved before its hash is checked, so parallel connections cannot run
/// more checks than the limit allows. Bounded: at most `maxClients` clients are tracked;
/// past it the oldest entries go first.
final class AuthLimiter: Sendable {
    struct Entry: Sendable {
        var failures: Int
        /// Attempts being checked now.
        var pending: Int
        var since: ContinuousClock.Instant
    }
    let limit: Int
    let window: Duration
    static let maxClients = 100_000
    private let table = NIOLockedValueBox<[IPAddress: Entry]>([:])

    init(limit: Int, window: Duration) {
        self.limit = limit
        self.window = window
    }

    /// The key a client's failures count under.
    static func key(_ ip: IPAddress) -> IPAddress {
        guard case .v6(let hi, let lo) = ip else { return ip }
        // An IPv4-mapped address (::ffff:a.b.c.d) stays one address.
        if hi == 0 && lo >> 32 == 0xffff { return ip }
        return .v6(hi, 0)
    }

    /// Takes one attempt for `ip`: false when its failures, with the attempts being
    /// checked, have reached the limit. Every `true` is followed by one `settle`.
    func reserve(_ ip: IPAddress, now: ContinuousClock.Instant = .now) -> Bool {
        let k = Self.key(ip)
        return table.withLockedValue { t in
            var e = t[k] ?? Entry(failures: 0, pending: 0, since: now)
            if now - e.since > window { e = Entry(failures: 0, pending: e.pending, since: now) }
            guard e.failures + e.pending < limit else { t[k] = e; return false }
            e.pending += 1
            t[k] = e
            if t.count > Self.maxClients { Self.trim(&t, now: now, window: window) }
            return true
        }
    }

    /// Ends a reserved attempt; a failure counts within the window. Returns the count.
    @discardableResult
    func settle(_ ip: IPAddress, failed: Bool, now: ContinuousClock.Instant = .now) -> Int {
        let k = Self.key(ip)
        return table.withLockedValue { t in
            var e = t[k] ?? Entry(failures: 0, pending: 1, since: now)
            e.pending = max(0, e.pending - 1)
            if now - e.since > window { e = Entry(failures: 0, pending: e.pending, since: now) }
            if failed { e.failures += 1 }
            if e.failures == 0 && e.pending == 0 { t[k] = nil } else { t[k] = e }
            return e.failures
        }
    }

    func isLockedOut(_ ip: IPAddress, now: ContinuousClock.Instant = .now) -> Bool {
        table.withLockedValue { t in
            guard let e = t[Self.key(ip)], now - e.since <= window else { return false }
            return e.failures >= limit
        }
    }

    static func trim(_ t: inout [IPAddress: Entry], now: ContinuousClock.Instant, window: Duration) {
        t = t.filter { now - $0.value.since <= window || $0.value.pending > 0 }
        guard t.count > maxClients else { return }
        let keep = t.sorted { $0.value.since > $1.value.since }.prefix(maxClients * 9 / 10)
        t = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
    }
}
