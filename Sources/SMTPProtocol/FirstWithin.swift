import Dispatch
import Foundation

/// The value of `work`, or `fallback()` once `timeout` has passed since `work` started,
/// whichever comes first. It never waits for a `work` that ignores cancellation (a DNS
/// query, a check blocked in a C library): the loser is cancelled and left to finish on its
/// own. The deadline is set before the work's task is created and fires on a Dispatch
/// queue, off the cooperative pool: a pool whose threads are all blocked delays neither
/// (the budget bounds how long the caller waits, queueing included). It is cancelled as
/// soon as `work` answers, so a race that `work` wins leaves nothing behind (a timer left
/// to its deadline keeps its closure and the continuation's context alive: at 3,000 checks
/// a second and a 30 s budget, that is 90,000 pending timers).
public func firstWithin<T: Sendable>(_ timeout: Duration, or fallback: @escaping @Sendable () -> T,
                                     _ work: @escaping @Sendable () async -> T) async -> T {
    let race = DeadlineRace<T>()
    return await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
        race.begin(c)
        race.arm(after: timeout, fallback)
        race.setWork(Task { race.finish(await work()) })
    }
}

/// One `firstWithin`: a continuation resumed by whichever side comes first.
final class DeadlineRace<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Never>?
    private var work: Task<Void, Never>?
    private var deadline: Deadlines.ID?
    private var timedOut = false

    func begin(_ c: CheckedContinuation<T, Never>) {
        lock.withLock { continuation = c }
    }

    func setWork(_ t: Task<Void, Never>) {
        let cancel: Bool = lock.withLock {
            if timedOut { return true }
            if continuation != nil { work = t }
            return false
        }
        if cancel { t.cancel() }
    }

    /// Starts the deadline, before the work's task exists.
    func arm(after timeout: Duration, _ fallback: @escaping @Sendable () -> T) {
        let id = Deadlines.shared.add(after: timeout) { self.expire(fallback) }
        let armed: Bool = lock.withLock {
            guard continuation != nil else { return false }
            deadline = id
            return true
        }
        if !armed { Deadlines.shared.cancel(id) }
    }

    /// The work's answer: it wins unless the deadline came first.
    func finish(_ value: T) {
        let (c, id): (CheckedContinuation<T, Never>?, Deadlines.ID?) = lock.withLock {
            defer { continuation = nil; deadline = nil; work = nil }
            return (continuation, deadline)
        }
        if let id { Deadlines.shared.cancel(id) }
        c?.resume(returning: value)
    }

    private func expire(_ fallback: @Sendable () -> T) {
        let (c, w): (CheckedContinuation<T, Never>?, Task<Void, Never>?) = lock.withLock {
            defer { continuation = nil; deadline = nil; work = nil; timedOut = true }
            return (continuation, work)
        }
        guard let c else { return }
        w?.cancel()
        c.resume(returning: fallback())
    }
}

/// The deadlines of every race in the process, under one Dispatch timer on a queue of its
/// own. Adding and cancelling one is a dictionary insert or removal under a lock; the timer
/// is only moved when a deadline comes before the one it is set for (a shorter budget), so
/// races that finish in time cost no timer work at all (a Dispatch source per race woke
/// Dispatch's manager thread twice per check: 5% of the gateway's CPU with every check on).
/// A deadline fires at most `slack` late, never early; the timer wakes for deadlines
/// already cancelled at most once per budget.
final class Deadlines: @unchecked Sendable {
    typealias ID = UInt64
    static let shared = Deadlines()
    /// How late a deadline may fire (Dispatch's leeway): deadlines this close share a wake-up.
    static let slack: UInt64 = 5_000_000
    /// Dispatch reads an uptime with bit 62 or 63 set as another clock's time (one already
    /// past): a deadline that far is "never", and the timer is not set for it.
    static let never = UInt64.max

    /// The uptime (ns) `timeout` after `now`; `never` past Dispatch's range.
    static func deadline(after timeout: Duration, now: UInt64) -> UInt64 {
        let (at, o) = now.addingReportingOverflow(UInt64(timeout.saturatingNanoseconds))
        return o || at >= 1 << 62 ? never : at
    }

    private struct Entry { var at: UInt64; var action: @Sendable () -> Void }
    private let lock = NSLock()
    private let queue = DispatchQueue(label: "mailgate.deadlines")
    private var pending: [ID: Entry] = [:]
    private var nextID: ID = 0
    /// The uptime (ns) the timer is set for, nil when it is not set.
    private var armedAt: UInt64?
    private var timer: DispatchSourceTimer?

    func add(after timeout: Duration, _ action: @escaping @Sendable () -> Void) -> ID {
        let deadline = Self.deadline(after: timeout, now: DispatchTime.now().uptimeNanoseconds)
        return lock.withLock {
            nextID &+= 1
            pending[nextID] = Entry(at: deadline, action: action)
            if armedAt.map({ deadline < $0 }) ?? true { setTimer(deadline) }
            return nextID
        }
    }

    func cancel(_ id: ID) {
        _ = lock.withLock { pending.removeValue(forKey: id) }
    }

    /// With the lock held.
    private func setTimer(_ at: UInt64) {
        guard at != Self.never else { return }
        armedAt = at
        let t: DispatchSourceTimer
        if let timer { t = timer } else {
            t = DispatchSource.makeTimerSource(queue: queue)
            t.setEventHandler { [unowned self] in self.fire() }
            timer = t
            t.schedule(deadline: DispatchTime(uptimeNanoseconds: at), leeway: .nanoseconds(Int(Self.slack)))
            t.resume()
            return
        }
        t.schedule(deadline: DispatchTime(uptimeNanoseconds: at), leeway: .nanoseconds(Int(Self.slack)))
    }

    private func fire() {
        let due: [Entry] = lock.withLock {
            let now = DispatchTime.now().uptimeNanoseconds
            let due = pending.values.filter { $0.at <= now }
            if !due.isEmpty { pending = pending.filter { $0.value.at > now } }
            armedAt = nil
            if let next = pending.values.lazy.map(\.at).min() { setTimer(next) }
            return due
        }
        for e in due { e.action() }
    }

    /// Deadlines not yet fired or cancelled (for tests).
    var count: Int { lock.withLock { pending.count } }
}

extension Duration {
    /// Whole nanoseconds, at most `Int.max` (a budget of centuries is "never").
    var saturatingNanoseconds: Int {
        let c = components
        guard c.seconds >= 0 else { return 0 }
        let (s, o) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if o { return Int.max }
        let (n, o2) = s.addingReportingOverflow(c.attoseconds / 1_000_000_000)
        return o2 ? Int.max : Int(max(n, 0))
    }
}
