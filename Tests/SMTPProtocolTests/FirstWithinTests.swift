import Foundation
import Testing
@testable import SMTPProtocol

/// `firstWithin`: the work's answer or the fallback, and nothing left behind by a race the
/// work won.
@Suite struct FirstWithinTests {
    final class Token: Sendable {}

    @Test func workThatAnswersInTimeWins() async {
        let v = await firstWithin(.seconds(5), or: { "late" }) { "work" }
        #expect(v == "work")
    }

    @Test func theFallbackAnswersWhenTheWorkIgnoresCancellation() async {
        let clock = ContinuousClock()
        let start = clock.now
        let v = await firstWithin(.milliseconds(50), or: { "late" }) {
            usleep(1_500_000)   // blocks its thread, deaf to cancellation
            return "work"
        }
        #expect(v == "late")
        #expect(clock.now - start < .milliseconds(1200))
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var isSet: Bool { lock.withLock { value } }
        func set() { lock.withLock { value = true } }
    }

    @Test func theLoserIsCancelled() async throws {
        let cancelled = Flag()
        let v = await firstWithin(.milliseconds(20), or: { "late" }) {
            try? await Task.sleep(for: .seconds(10))
            if Task.isCancelled { cancelled.set() }
            return "work"
        }
        #expect(v == "late")
        for _ in 0..<100 where !cancelled.isSet { try await Task.sleep(for: .milliseconds(10)) }
        #expect(cancelled.isSet)
    }

    /// A won race cancels its timer: the fallback (and what it holds) is released at once,
    /// not when a 60 s budget runs out.
    @Test func aWonRaceLeavesNoTimerBehind() async throws {
        weak var held: Token?
        do {
            let token = Token()
            held = token
            let v = await firstWithin(.seconds(60), or: { _ = token; return 0 }) { 1 }
            #expect(v == 1)
        }
        for _ in 0..<100 where held != nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(held == nil, "the fallback is still held by a pending timer")
    }

    /// One timer serves every race: a short budget set after a long one still fires on time.
    @Test func aShortBudgetAfterALongOneFiresOnTime() async {
        async let long = firstWithin(.seconds(3), or: { "long late" }) {
            try? await Task.sleep(for: .seconds(2))
            return "long work"
        }
        try? await Task.sleep(for: .milliseconds(20))
        let clock = ContinuousClock()
        let start = clock.now
        let short = await firstWithin(.milliseconds(50), or: { "short late" }) {
            try? await Task.sleep(for: .seconds(5))
            return "short work"
        }
        let elapsed = clock.now - start
        #expect(short == "short late")
        #expect(elapsed < .milliseconds(1000), "a 50 ms budget fired after \(elapsed)")
        #expect(await long == "long work")
    }

    @Test func aHugeBudgetDoesNotOverflow() async {
        let v = await firstWithin(.seconds(Int64.max), or: { 0 }) {
            try? await Task.sleep(for: .milliseconds(100))
            return 7
        }
        #expect(v == 7)
        #expect(Duration.seconds(Int64.max).saturatingNanoseconds == Int.max)
        // Past Dispatch's range (bit 62) a deadline is "never", not a time already past.
        #expect(Deadlines.deadline(after: .seconds(Int64.max), now: 1_000) == Deadlines.never)
        #expect(Deadlines.deadline(after: .seconds(5_000_000_000), now: 1_000) == Deadlines.never)
        #expect(Deadlines.deadline(after: .seconds(2), now: 1_000) == 2_000_001_000)
        #expect(Duration.milliseconds(-5).saturatingNanoseconds == 0)
        #expect(Duration.milliseconds(1500).saturatingNanoseconds == 1_500_000_000)
    }
}
