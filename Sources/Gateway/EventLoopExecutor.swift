import NIOCore
import NIOPosix

/// Where Swift Concurrency runs the sessions' tasks. By default on its own global pool, so
/// every `await` on a channel hops between a NIO event loop thread and a pool thread; with
/// `MAILGATE_NIO_EXECUTOR=1` NIO's event loop threads (`MultiThreadedEventLoopGroup.singleton`,
/// which the gateway's channels use) become the global executor, and a session's work and its
/// I/O share threads. Measured by `bench/run` (see bench/README.md).
public enum EventLoopExecutor {
    /// Installs the event loops as the global executor when the environment asks for it;
    /// true when they are. Call once, first thing in the process.
    @discardableResult
    public static func installIfAsked(_ environment: [String: String]) -> Bool {
        guard environment["MAILGATE_NIO_EXECUTOR"] == "1" else { return false }
        return NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
