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
    /// Hashed for unknown users, so that they take as long as known ones: when the file has
    /// users, one of their own hashes (same scheme, same cost; an unknown user never
    /// matches, whatever the password), else a fresh default-scheme hash.
    private let fallbackDecoy: String

    init(_ config: AuthConfig, path: String) throws {
        self.config = config
        self.path = path
        file = NIOLockedValueBox(try PasswdFile.load(path: path))
        limiter = AuthLimiter(limit: config.maxFailuresPerClient, window: .seconds(config.failureWindow))
        let made = try PasswordHash.make(UUID().uuidString)
        fallbackDecoy = String(made[made.index(after: made.firstIndex(of: "}") ?? made.startIndex)...])
    }

    func reload() throws {
        let next = try PasswdFile.load(path: path)
        file.withLockedValue { $0 = next }
    }

    func check(_ c: SMTPCredentials, client: IPAddress) async -> SMTPCredentialCheck {
        guard limiter.reserve(client) else { return .lockedOut }
        let (entry, decoy) = file.withLockedValue { ($0.entry(for: c.user), $0.entries.first?.hash) }
        let hash = entry?.hash ?? decoy ?? fallbackDecoy
        let password = c.password
        let matched: Bool
        do {
            matched = try await NIOThreadPool.singleton.runIfActive { PasswordHash.verify(password, hash: hash) }
        } catch {
            limiter.settle(client, failed: false)
            return .unavailable("the hashing threads are gone: \(error)")
        }
        if matched, let entry {
            limiter.settle(client, failed: false)
            return .accepted(SMTPAuthenticatedUser(name: entry.user, addresses: entry.addresses))
        }
        limiter.settle(client, failed: true)
        try? await Task.sleep(for: .milliseconds(config.failureDelay))
        return .rejected
    }
}
