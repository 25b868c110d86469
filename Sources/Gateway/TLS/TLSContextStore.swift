import Foundation
import NIOConcurrencyHelpers
import NIOSSL

/// A listener's TLS contexts, one per certificate, chosen by the client's SNI name. Built
/// from the PEM files at start and again on `reload` (SIGHUP, or a file that changed):
/// new sessions get the new contexts, sessions in flight keep theirs; a reload that fails
/// (unreadable file, key not matching the certificate) changes nothing and says why.
public final class TLSContextStore: Sendable {
    struct Contexts: Sendable {
        /// The first certificate's context: for no SNI name, or one no certificate lists.
        let fallback: NIOSSLContext
        let byName: [String: NIOSSLContext]
        /// `*.example.org` entries, by `example.org`.
        let byWildcard: [String: NIOSSLContext]
        /// What the files looked like when read (size and mtime), to notice a change.
        let stamp: [String]
    }

    let config: ListenerTLSConfig
    private let box: NIOLockedValueBox<Contexts>

    public init(_ config: ListenerTLSConfig) throws {
        self.config = config
        box = NIOLockedValueBox(try Self.build(config))
    }

    /// The context for a server name (lower case), wildcards matching one label.
    public func context(for serverName: String?) -> NIOSSLContext {
        let c = box.withLockedValue { $0 }
        guard let name = serverName?.lowercased() else { return c.fallback }
        if let exact = c.byName[name] { return exact }
        if let dot = name.firstIndex(of: "."), let w = c.byWildcard[String(name[name.index(after: dot)...])] { return w }
        return c.fallback
    }

    /// Reads the files again. Throws (and keeps serving the old contexts) when they are bad.
    public func reload() throws {
        let next = try Self.build(config)
        box.withLockedValue { $0 = next }
    }

    /// True when a certificate or key file differs from what was last read.
    public var filesChanged: Bool {
        Self.stamp(config) != box.withLockedValue { $0.stamp }
    }

    static func build(_ config: ListenerTLSConfig) throws -> Contexts {
        var fallback: NIOSSLContext?
        var byName: [String: NIOSSLContext] = [:], byWildcard: [String: NIOSSLContext] = [:]
        for cert in config.certificates {
            let ctx = try makeContext(cert, config)
            if fallback == nil { fallback = ctx }
            for n in cert.names {
                if n.hasPrefix("*.") { byWildcard[String(n.dropFirst(2))] = byWildcard[String(n.dropFirst(2))] ?? ctx }
                else { byName[n] = byName[n] ?? ctx }
            }
        }
        guard let fallback else { throw TLSSetupError(description: "no tlsCertificates") }
        return Contexts(fallback: fallback, byName: byName, byWildcard: byWildcard, stamp: stamp(config))
    }

    static func makeContext(_ cert: ListenerTLSConfig.Certificate, _ config: ListenerTLSConfig) throws -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(cert.certificate).map { NIOSSLCertificateSource.certificate($0) }
            guard !chain.isEmpty else { throw TLSSetupError(description: "no certificate in the file") }
            let key = try NIOSSLPrivateKey(file: cert.key, format: .pem)
            var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            tls.minimumTLSVersion = config.minVersion == "1.3" ? .tlsv13 : .tlsv12
            if let ciphers = config.ciphers { tls.cipherSuites = ciphers }
            return try NIOSSLContext(configuration: tls)
        } catch let e as TLSSetupError {
            throw TLSSetupError(description: "\(cert.certificate): \(e.description)")
        } catch {
            throw TLSSetupError(description: "\(cert.certificate) / \(cert.key): \(error)")
        }
    }

    static func stamp(_ config: ListenerTLSConfig) -> [String] {
        config.certificates.flatMap { [$0.certificate, $0.key] }.map(FileStamp.of)
    }
}

public struct TLSSetupError: Error, CustomStringConvertible {
    public let description: String
}
