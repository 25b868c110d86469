/// The `auth:` section: where the users are and how brute force is slowed down.
public struct AuthConfig: Sendable {
    /// A Dovecot-style passwd-file (README "SMTP AUTH"); needed by a listener with
    /// `authRequired` true or announce.
    public var passwdFile: String?
    /// Failed attempts in one session before 421 and close.
    public var maxFailuresPerSession = 3
    /// Failed attempts from one client address within `failureWindow` before that address
    /// gets 454 4.7.0 for every AUTH until the window has passed (Postfix's
    /// smtpd_client_auth_rate_limit, Dovecot's auth_penalty).
    public var maxFailuresPerClient = 20
    /// Seconds.
    public var failureWindow = 600
    /// Milliseconds before a failure is answered (never blocks a thread).
    public var failureDelay = 1000
    public init() {}
}
