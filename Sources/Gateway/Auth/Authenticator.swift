import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import SMTPProtocol

/// Checks SMTP AUTH credentials against the passwd-file: the hash on NIO's blocking thread
/// pool (never an event loop), unknown users hashed too (no timing difference), failures
/// counted per client address and answered after a delay that holds no thread. The file is
/// read at start (a bad one stops the start) and again on SIGHUP (a bad one is refused and
/// the users in force stay).
final class Authenticator: Sendable {
    let config: AuthConfig
    let path: String
    private let file: NIOLockedValueBox<PasswdFile>
    let limiter: AuthLimiter
    /// Hashed for unknown users, so that they take as long as known ones.
    private let decoy: String

    init(_ config: AuthConfig, path: String) throws {
        self.config = config
        self.path = path
        file = NIOLockedValueBox(try PasswdFile.load(path: path))
        limiter = AuthLimiter(limit: config.maxFailuresPerClient, window: .seconds(config.failureWindow))
        let made = try PasswordHash.make(UUID().uuidString)
        decoy = String(made[made.index(after: made.firstIndex(of: "}") ?? made.startIndex)...])
    }

    func reload() throws {
        let next = try PasswdFile.load(path: path)
        file.withLockedValue { $0 = next }
    }

    func check(_ c: SMTPCredentials, client: IPAddress) async -> SMTPCredentialCheck {
        if limiter.isLockedOut(client) { return .lockedOut }
        let entry = file.withLockedValue { $0.entry(for: c.user) }
        let hash = entry?.hash ?? decoy
        let password = c.password
        let matched: Bool
        do {
            matched = try await NIOThreadPool.singleton.runIfActive { PasswordHash.verify(password, hash: hash) }
        } catch {
            return .unavailable("the hashing threads are gone: \(error)")
        }
        if matched, let entry { return .accepted(SMTPAuthenticatedUser(name: entry.user, addresses: entry.addresses)) }
        limiter.recordFailure(client)
        try? await Task.sleep(for: .milliseconds(config.failureDelay))
        return .rejected
    }
}
