import NIOCore
import NIOSSL
import SMTPProtocol

/// `downstream.tls`: STARTTLS toward the relay targets.
public struct DownstreamTLSConfig: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable {
        /// Plaintext.
        case off
        /// STARTTLS when the target offers it, plaintext otherwise; the certificate is not
        /// checked unless `verify` says so (Postfix's `may`).
        case opportunistic
        /// STARTTLS or no delivery (451); the certificate is checked unless `verify: false`
        /// (Postfix's `verify`).
        case required
    }
    public var mode = Mode.off
    /// Check the chain (against `caFile`, else the system's roots) and the name. Default:
    /// on for `required`, off for `opportunistic`.
    public var verify: Bool?
    public var caFile: String?
    /// The name the certificate must carry; default the target's host (an address is
    /// checked against the certificate's IP entries).
    public var name: String?
    public init() {}

    public var verifies: Bool { verify ?? (mode == .required) }
}

/// The client TLS context, built once at start (a CA file that cannot be read stops it).
struct DownstreamTLS: Sendable {
    let config: DownstreamTLSConfig
    let context: NIOSSLContext

    init?(_ config: DownstreamTLSConfig) throws {
        guard config.mode != .off else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = config.verifies ? .fullVerification : .none
        if let ca = config.caFile { tls.trustRoots = .file(ca) }
        self.config = config
        do { context = try NIOSSLContext(configuration: tls) } catch {
            throw TLSSetupError(description: "downstream.tlsCAFile \(config.caFile ?? ""): \(error)")
        }
    }

    /// Puts the TLS client in front of everything, on the channel's event loop.
    func start(on channel: Channel, host: String) async throws {
        let name = config.name ?? host
        // SNI and the name check take a host name; for an address NIO checks the peer's IP.
        let sni: String? = IPAddress(name) == nil ? name : nil
        let context = self.context
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: sni), position: .first)
        }.get()
    }
}
