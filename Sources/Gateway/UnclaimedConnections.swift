import NIOCore
import NIOConcurrencyHelpers
import SMTPProtocol

/// Accepted connections that the accept loop has not taken yet.
///
/// NIO's async server bootstrap wraps each accepted connection in a `NIOAsyncChannel`
/// inside the child initializer, then hands it to the accept loop through a stream. A
/// connection accepted while the listener closes can be left in that stream, or wrapped after
/// the loop has ended; dropping it without `executeThenClose` finishes nothing, and its
/// writer's deinit traps the whole process (swift-nio issue 2637). So every wrapped
/// connection is held here until the loop claims it, and at shutdown those never claimed
/// are finished and closed; a connection wrapped after that is finished at once.
final class UnclaimedConnections: @unchecked Sendable {
    typealias Connection = NIOAsyncChannel<SMTPInbound, ByteBuffer>
    private let lock = NIOLock()
    private var waiting: [ObjectIdentifier: Connection] = [:]
    private var drained = false

    /// Holds a newly wrapped connection; when the listener is already gone, finishes and
    /// closes it instead.
    func hold(_ c: Connection) {
        let kept = lock.withLock { () -> Bool in
            if drained { return false }
            waiting[ObjectIdentifier(c.channel)] = c
            return true
        }
        if !kept { Self.discard(c) }
    }

    /// The accept loop has taken the connection; it will run `executeThenClose`.
    func claim(_ c: Connection) {
        lock.withLock { waiting[ObjectIdentifier(c.channel)] = nil }
    }

    /// Finishes and closes every connection never claimed; from now on `hold` does so at once.
    func drain() {
        let left = lock.withLock { () -> [Connection] in
            drained = true
            defer { waiting = [:] }
            return Array(waiting.values)
        }
        left.forEach(Self.discard)
    }

    var count: Int { lock.withLock { waiting.count } }

    static func discard(_ c: Connection) {
        c.outbound.finish()
        c.channel.close(promise: nil)
    }
}
