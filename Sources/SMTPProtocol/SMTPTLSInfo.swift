/// What a session knows of its TLS layer once the handshake is done: for the decision log,
/// the `Received:` field's `tls` clause (RFC 8314 §4.3) and the rules' `tls` fact.
public struct SMTPTLSInfo: Sendable, Equatable {
    /// The protocol version, e.g. `TLSv1.3`.
    public var version: String
    /// The cipher suite's IANA name, e.g. `TLS_AES_256_GCM_SHA384`; `unknown` when not seen.
    public var cipher: String
    /// The server name the client asked for (SNI), if any.
    public var serverName: String?
    /// Octets the client sent after STARTTLS and before the handshake: thrown away unread
    /// (CVE-2011-0411), counted for the log.
    public var discardedOctets: Int

    public init(version: String, cipher: String, serverName: String? = nil, discardedOctets: Int = 0) {
        self.version = version
        self.cipher = cipher
        self.serverName = serverName
        self.discardedOctets = discardedOctets
    }

    /// One line for log reasons: `TLSv1.3 TLS_AES_256_GCM_SHA384 sni=mx.example`.
    public var summary: String {
        "\(version) \(cipher)" + (serverName.map { " sni=\($0)" } ?? "")
    }
}

/// Fired into the channel pipeline by the TLS layer once its handshake is done; the inbound
/// handler hands it on in stream order as `SMTPInbound.tls`.
public struct SMTPTLSEstablished: Sendable {
    public var info: SMTPTLSInfo
    public init(_ info: SMTPTLSInfo) { self.info = info }
}
