import Foundation
import Testing
import Checks
import PolicyEngine
import SMTPProtocol

/// Remembers which checks were evaluated, in order, across tasks.
final class CallLog: @unchecked Sendable {
    private let lock = NSLock()
    private var names: [String] = []
    func add(_ n: String) { lock.lock(); names.append(n); lock.unlock() }
    var calls: [String] { lock.lock(); defer { lock.unlock() }; return names }
}

/// A check with a fixed answer, optionally after a (cancellable) sleep.
struct StubCheck: Check {
    let name: String
    let stages: Set<Stage>
    var result: CheckResult
    var delay: Duration?
    var calls: CallLog?

    init(_ name: String, _ stages: Set<Stage> = [.mail], _ result: CheckResult = .pass(), delay: Duration? = nil, calls: CallLog? = nil) {
        self.name = name
        self.stages = stages
        self.result = result
        self.delay = delay
        self.calls = calls
    }

    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        calls?.add(name)
        if let delay { try? await Task.sleep(for: delay) }
        return result
    }
}

/// Reports the score it was shown, so the test can see what the pipeline passes along.
struct ScoreProbe: Check {
    let name = "probe"
    let stages: Set<Stage> = [.mail]
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        .pass("saw \(context.score)")
    }
}

/// A check that blocks without looking at task cancellation (as a blocking C call would).
struct UncooperativeCheck: Check {
    let name = "stuck"
    let stages: Set<Stage> = [.mail]
    let millis: Int
    func evaluate(stage: Stage, context: CheckContext) async -> CheckResult {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(millis)) { c.resume() }
        }
        return .pass("late")
    }
}

let reject550 = SMTPReply(550, "5.7.1", "Go away")
let tempfail451 = SMTPReply(451, "4.7.1", "Later")
let timeoutReply = SMTPReply(451, "4.4.3", "Temporary policy failure, try again later")

func run(_ p: Pipeline, _ stage: Stage, _ ctx: CheckContext = context()) async -> (StageOutcome, [VerdictRecord]) {
    var records: [VerdictRecord] = []
    let outcome = await p.run(stage, context: ctx) { records.append($0) }
    return (outcome, records)
}

@Suite struct PipelineTests {
    @Test func stagesAreOrdered() {
        #expect(Stage.allCases == [.connect, .helo, .mail, .rcpt, .data, .message])
        #expect(Stage.connect < .helo)
        #expect(Stage.rcpt < .data)
        #expect(!(Stage.message < .data))
        #expect(Stage.mail.rawValue == "mail")
    }

    @Test func actionNamesAndReplies() {
        #expect(Action.continue.name == "continue")
        #expect(Action.accept.name == "accept")
        #expect(Action.reject(reject550).name == "reject")
        #expect(Action.tempfail(tempfail451).name == "tempfail")
        #expect(Action.reject(reject550).reply == reject550)
        #expect(Action.tempfail(tempfail451).reply == tempfail451)
        #expect(Action.continue.reply == nil)
        #expect(Action.accept.reply == nil)
    }

    @Test func emptyPipeline() async {
        let p = Pipeline(checks: [])
        #expect(!p.runs(at: .mail))
        let (o, recs) = await run(p, .mail)
        #expect(o.action == .continue)
        #expect(o.decidedBy == nil)
        #expect(o.score == 0)
        #expect(o.headers == [])
        #expect(recs.isEmpty)
    }

    @Test func runsAt() {
        let p = Pipeline(checks: [StubCheck("a", [.mail]), StubCheck("b", [.rcpt, .message])])
        #expect(p.runs(at: .mail))
        #expect(p.runs(at: .rcpt))
        #expect(p.runs(at: .message))
        #expect(!p.runs(at: .connect))
        #expect(!p.runs(at: .helo))
        #expect(!p.runs(at: .data))
        #expect(p.checkTimeout == .seconds(30))
    }

    @Test func checksRunInOrderAndOnlyAtTheirStages() async {
        let calls = CallLog()
        let p = Pipeline(checks: [
            StubCheck("a", [.mail], calls: calls),
            StubCheck("b", [.rcpt], calls: calls),
            StubCheck("c", [.mail, .rcpt], calls: calls),
            StubCheck("d", [.mail], calls: calls),
        ])
        let (o, recs) = await run(p, .mail)
        #expect(recs.map(\.check) == ["a", "c", "d"])
        #expect(calls.calls == ["a", "c", "d"])
        #expect(recs.allSatisfy { $0.stage == .mail })
        #expect(o.action == .continue)
        #expect(o.decidedBy == nil)

        let (o2, recs2) = await run(p, .rcpt)
        #expect(recs2.map(\.check) == ["b", "c"])
        #expect(recs2.allSatisfy { $0.stage == .rcpt })
        #expect(o2.action == .continue)
        #expect(calls.calls == ["a", "c", "d", "b", "c"])

        let (o3, recs3) = await run(p, .connect)
        #expect(recs3.isEmpty)
        #expect(o3.action == .continue)
    }

    @Test func acceptStopsTheStage() async {
        let calls = CallLog()
        let p = Pipeline(checks: [
            StubCheck("first", [.mail], CheckResult(.continue, result: "pass", score: 1), calls: calls),
            StubCheck("allow", [.mail], CheckResult(.accept, result: "whitelisted"), calls: calls),
            StubCheck("deny", [.mail], CheckResult(.reject(reject550), result: "fail"), calls: calls),
        ])
        let (o, recs) = await run(p, .mail)
        #expect(o.action == .accept)
        #expect(o.decidedBy == "allow")
        #expect(o.score == 1)
        #expect(recs.map(\.check) == ["first", "allow"])
        #expect(calls.calls == ["first", "allow"])
    }

    @Test func rejectStopsTheStage() async {
        let calls = CallLog()
        let p = Pipeline(checks: [
            StubCheck("first", [.mail], calls: calls),
            StubCheck("deny", [.mail], CheckResult(.reject(reject550), result: "fail", reason: "listed"), calls: calls),
            StubCheck("after", [.mail], CheckResult(.accept, result: "x"), calls: calls),
        ])
        let (o, recs) = await run(p, .mail)
        #expect(o.action == .reject(reject550))
        #expect(o.action.reply == reject550)
        #expect(o.decidedBy == "deny")
        #expect(recs.map(\.check) == ["first", "deny"])
        #expect(recs[1].action == .reject(reject550))
        #expect(recs[1].result == "fail")
        #expect(recs[1].reason == "listed")
        #expect(calls.calls == ["first", "deny"])
    }

    @Test func tempfailStopsTheStage() async {
        let p = Pipeline(checks: [
            StubCheck("dns", [.rcpt], CheckResult(.tempfail(tempfail451), result: "error")),
            StubCheck("after", [.rcpt], CheckResult(.reject(reject550), result: "fail")),
        ])
        let (o, recs) = await run(p, .rcpt)
        #expect(o.action == .tempfail(tempfail451))
        #expect(o.decidedBy == "dns")
        #expect(recs.count == 1)
    }

    @Test func scoreAndHeadersAccumulate() async {
        let p = Pipeline(checks: [
            StubCheck("a", [.mail], CheckResult(.continue, result: "x", score: 1.5, headers: [HeaderField("X-A", "1")])),
            StubCheck("b", [.mail], CheckResult(.continue, result: "y", score: 2, headers: [HeaderField("X-B", "2"), HeaderField("X-B2", "3")])),
            ScoreProbe(),
            StubCheck("c", [.mail], CheckResult(.reject(reject550), result: "z", score: 0.25, headers: [HeaderField("X-C", "4")])),
            StubCheck("d", [.mail], CheckResult(.continue, result: "never", score: 100, headers: [HeaderField("X-D", "5")])),
        ])
        var ctx = context()
        ctx.score = 10  // score from earlier stages is visible to checks, not added to the outcome
        let (o, recs) = await run(p, .mail, ctx)
        #expect(o.score == 3.75)
        #expect(o.headers == [HeaderField("X-A", "1"), HeaderField("X-B", "2"), HeaderField("X-B2", "3"), HeaderField("X-C", "4")])
        #expect(o.action == .reject(reject550))
        #expect(o.decidedBy == "c")
        #expect(recs.map(\.check) == ["a", "b", "probe", "c"])
        #expect(recs.map(\.score) == [1.5, 2, 0, 0.25])
        // The probe saw the score so far: 10 from before plus 1.5 and 2 from this stage.
        #expect(recs[2].result == "saw 13.5")
    }

    @Test func verdictRecordsCarryEverything() async {
        let p = Pipeline(checks: [
            StubCheck("slowish", [.data], CheckResult(.continue, result: "pass", reason: "fine", score: 0.5), delay: .milliseconds(30)),
            StubCheck("fast", [.data], CheckResult(.continue, result: "neutral")),
        ], checkTimeout: .seconds(5))
        let (_, recs) = await run(p, .data)
        #expect(recs.count == 2)
        let r = recs[0]
        #expect(r.stage == .data)
        #expect(r.check == "slowish")
        #expect(r.result == "pass")
        #expect(r.action == .continue)
        #expect(r.reason == "fine")
        #expect(r.score == 0.5)
        #expect(r.durationMicros >= 30_000)
        #expect(r.durationMicros < 5_000_000, "a 30 ms check took more than 5 s")
        #expect(recs[1].check == "fast")
        #expect(recs[1].reason == nil)
        #expect(recs[1].durationMicros >= 0)
    }

    @Test func checkPastItsTimeoutTempfails() async throws {
        let calls = CallLog()
        let p = Pipeline(checks: [
            StubCheck("before", [.rcpt], CheckResult(.continue, result: "pass", score: 1), calls: calls),
            StubCheck("slow", [.rcpt], CheckResult(.accept, result: "would-accept"), delay: .seconds(30), calls: calls),
            StubCheck("after", [.rcpt], calls: calls),
        ], checkTimeout: .milliseconds(50))
        let clock = ContinuousClock()
        let start = clock.now
        let (o, recs) = await run(p, .rcpt)
        let elapsed = clock.now - start
        // Bounds are loose: the machine may be busy with other tests; the check would take 30 s.
        #expect(elapsed < .seconds(10))
        // Never taken as the accept it would have given, never a hard reject.
        #expect(o.action == .tempfail(timeoutReply))
        #expect(o.action.reply?.encoded == "451 4.4.3 Temporary policy failure, try again later\r\n")
        #expect(o.decidedBy == "slow")
        #expect(o.score == 1)
        #expect(recs.count == 2)
        #expect(recs.map(\.check) == ["before", "slow"])
        try #require(recs.count == 2)
        let t = recs[1]
        #expect(t.result == "timeout")
        #expect(t.action == .tempfail(timeoutReply))
        #expect(t.reason?.hasPrefix("check exceeded its time budget of ") == true)
        #expect(t.score == 0)
        #expect(t.durationMicros >= 50_000)
        #expect(t.durationMicros < 10_000_000)
        #expect(calls.calls == ["before", "slow"])
    }

    @Test func checkJustUnderItsTimeoutCounts() async {
        let p = Pipeline(checks: [
            StubCheck("quick", [.mail], CheckResult(.reject(reject550), result: "fail"), delay: .milliseconds(5)),
        ], checkTimeout: .seconds(5))
        let (o, recs) = await run(p, .mail)
        #expect(o.action == .reject(reject550))
        #expect(recs.map(\.result) == ["fail"])
    }

    /// The time budget must bound how long the session waits, also for a check that does not
    /// react to cancellation (a blocking resolver call, say).
    @Test func timeoutBoundsTheWaitForAnUncooperativeCheck() async {
        let p = Pipeline(checks: [UncooperativeCheck(millis: 2500)], checkTimeout: .milliseconds(50))
        let clock = ContinuousClock()
        let start = clock.now
        let (o, recs) = await run(p, .mail)
        let elapsed = clock.now - start
        #expect(o.action == .tempfail(timeoutReply))
        #expect(recs.first?.result == "timeout")
        #expect(elapsed < .milliseconds(2000), "pipeline waited \(elapsed) for a check with a 50 ms budget")
    }

    @Test func realChecksInAPipeline() async {
        let p = Pipeline(checks: [HeloCheck(), SizeCheck()])
        #expect(p.runs(at: .helo))
        #expect(p.runs(at: .mail))
        #expect(p.runs(at: .message))
        #expect(!p.runs(at: .rcpt))

        var ctx = context(maxSize: 1000)
        ctx.helo = "localhost"
        let (h, hrecs) = await run(p, .helo, ctx)
        #expect(h.action == .reject(SMTPReply(504, "5.5.2", "Helo command rejected: need fully-qualified hostname")))
        #expect(h.decidedBy == "helo")
        #expect(hrecs.map(\.check) == ["helo"])

        var params = MailParameters()
        params.size = 5000
        ctx.mailParameters = params
        let (m, mrecs) = await run(p, .mail, ctx)
        #expect(m.action == .reject(SizeCheck.tooBig))
        #expect(m.decidedBy == "size")
        #expect(mrecs.map(\.result) == ["oversize"])

        var scoring = HeloCheck.Options()
        scoring.reject = false
        scoring.score = 3
        let q = Pipeline(checks: [HeloCheck(options: scoring), HeloCheck(options: scoring)])
        let (s, srecs) = await run(q, .helo, ctx)
        #expect(s.action == .continue)
        #expect(s.score == 6)
        #expect(srecs.map(\.result) == ["invalid", "invalid"])
    }
}
