import Foundation
import LogSink

extension GatewayServer {
    /// Starts shipping the decision log to the shared PostgreSQL sink, when one is set.
    func startLogSink() {
        guard let sink = shared.logSink else { return }
        let t = Task { await sink.run() }
        lock.withLock { sinkTask = t }
    }

    /// At shutdown, after the log's last flush: lets the sink catch up for up to two seconds
    /// (what it cannot ship now it ships after the next start), then stops it.
    func stopLogSink() async {
        guard let sink = shared.logSink, let t = lock.withLock({ sinkTask }) else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while sink.lag > 0 && sink.status.state == .shipping && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        t.cancel()
        await t.value
    }

    /// The sink's state (nil when there is none).
    public var logSinkStatus: PostgresLogSink.Status? { shared.logSink?.status }
}
