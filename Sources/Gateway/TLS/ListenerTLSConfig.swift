/// A listener's TLS settings (James' `tls`, with PEM files instead of a keystore).
public struct ListenerTLSConfig: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable {
        /// No TLS: STARTTLS is not offered.
        case off
        /// `tls: true`: STARTTLS offered after EHLO (RFC 3207).
        case starttls
        /// `tls: implicit`: TLS from the first byte (port 465, RFC 8314).
        case implicit
    }

    /// One certificate chain and its key; `names` are the SNI names it serves (the first
    /// certificate of the list also serves clients that send no name or an unknown one).
    public struct Certificate: Sendable, Equatable {
        public var certificate: String
        public var key: String
        public var names: [String] = []
        public init(certificate: String, key: String, names: [String] = []) {
            self.certificate = certificate
            self.key = key
            self.names = names
        }
    }

    public var mode = Mode.off
    /// MAIL needs TLS first (530 5.7.0); for `implicit` it always has it.
    public var required = false
    public var certificates: [Certificate] = []
    /// The lowest protocol version accepted: 1.2 (default) or 1.3.
    public var minVersion = "1.2"
    /// The TLS 1.2 cipher list (OpenSSL syntax); nil for swift-nio-ssl's default. TLS 1.3's
    /// suites are always its three AEAD suites.
    public var ciphers: String?

    public init() {}
}
