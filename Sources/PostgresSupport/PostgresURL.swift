import Foundation
import Logging
import PostgresNIO

/// The one way MailGate turns a `postgres://user:password@host:port/database` URL into a
/// postgres-nio client (the shared greylist store, the decision-log sink, the CLI's
/// `--postgres`), and a PostgreSQL error into one line a person can act on.
public enum PostgresURL {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String { "bad PostgreSQL URL (want postgres://user:password@host:port/database)" }
    }

    /// The client configuration the URL names: no TLS (loopback or a private network), a
    /// five-second connect timeout.
    public static func configuration(_ url: String) throws -> PostgresClient.Configuration {
        guard let u = URLComponents(string: url), u.scheme == "postgres" || u.scheme == "postgresql", let host = u.host, !host.isEmpty else {
            throw Invalid()
        }
        var config = PostgresClient.Configuration(host: host, port: u.port ?? 5432, username: u.user ?? "postgres", password: u.password,
                                                  database: u.path.count > 1 ? String(u.path.dropFirst()) : nil, tls: .disable)
        config.options.connectTimeout = .seconds(5)
        return config
    }

    /// A client for the URL whose own chatter (a lease before run() starts, retries) stays
    /// out of the operator's log: its users report failures themselves.
    public static func client(_ url: String, label: String) throws -> PostgresClient {
        var poolLogger = Logger(label: label)
        poolLogger.logLevel = .error
        return PostgresClient(configuration: try configuration(url), backgroundLogger: poolLogger)
    }

    /// One line: what the server said, or why it could not be reached.
    public static func describe(_ error: any Error) -> String {
        if let p = error as? PSQLError {
            if let m = p.serverInfo?[.message] { return m }
            return "\(p.code)"
        }
        return "\(error)"
    }
}
