import Dispatch
import Foundation

/// The value of `work`, or `fallback()` once `timeout` has passed since `work` started,
/// whichever comes first. It never waits for a `work` that ignores cancellation (a DNS
/// query, a check blocked in a C library): the loser is cancelled and left to finish on its
/// own. The deadline is a Dispatch timer, off the cooperative pool (work that blocks the
/// pool's threads cannot hold it back), and it is cancelled as soon as `work` answers, so a
/// race that `work` wins leaves nothing behind (a timer left to its deadline keeps its
/// closure and the continuation's context alive: at 3,000 checks a second and a 30 s
/// budget, that is 90,000 pending timers).
public func firstWithin<T: Sendable>(_ timeout: Duration, or fallback: @escaping @Sendable () -> T,
                                     _ work: @escaping @Sendable () async -> T) async -> T {
    let race = DeadlineRace<T>()
    return await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
        race.begin(c)
        race.setWork(Task {
            race.arm(after: timeout, fallback)
            race.finish(await work())
        })
    }
}

/// One `firstWithin`: a continuation resumed by whichever side comes first.
final class DeadlineRace<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Never>?
    private var work: Task<Void, Never>?
    private var timer: DispatchSourceTimer?
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

    /// Starts the deadline; called by the work's task before it runs the work.
    func arm(after timeout: Duration, _ fallback: @escaping @Sendable () -> T) {
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + .nanoseconds(timeout.saturatingNanoseconds))
        t.setEventHandler { self.expire(fallback) }
        let armed: Bool = lock.withLock {
            guard continuation != nil else { return false }
            timer = t
            return true
        }
        // A source must be resumed before it is released, even one that is not wanted.
        if !armed { t.cancel() }
        t.resume()
    }

    /// The work's answer: it wins unless the deadline came first.
    func finish(_ value: T) {
        let (c, t): (CheckedContinuation<T, Never>?, DispatchSourceTimer?) = lock.withLock {
            defer { continuation = nil; timer = nil; work = nil }
            return (continuation, timer)
        }
        t?.cancel()
        c?.resume(returning: value)
    }

    private func expire(_ fallback: @Sendable () -> T) {
        let (c, t, w): (CheckedContinuation<T, Never>?, DispatchSourceTimer?, Task<Void, Never>?) = lock.withLock {
            defer { continuation = nil; timer = nil; work = nil; timedOut = true }
            return (continuation, timer, work)
        }
        t?.cancel()
        guard let c else { return }
        w?.cancel()
        c.resume(returning: fallback())
    }
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
