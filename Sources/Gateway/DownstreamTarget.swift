import SMTPProtocol

/// A downstream: `smtp:host:port`, `lmtp:host:port`, `lmtp:unix:/path` or `maildir:PATH`.
public enum DownstreamTarget: Sendable, Equatable, CustomStringConvertible {
    /// Where a relay target listens.
    public enum Endpoint: Sendable, Equatable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unix(String)

        /// `host:port`, `[v6]:port` or `unix:/path`.
        init?(_ s: String) {
            if let b = BindAddress(s) {
                self = b.unixPath.map { .unix($0) } ?? .tcp(host: b.host, port: b.port)
                return
            }
            guard let colon = s.lastIndex(of: ":"), let p = Int(s[s.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            let host = String(s[..<colon])
            guard AddressParser.isDomain(Substring(host), allowUTF8: false) else { return nil }
            self = .tcp(host: host, port: p)
        }

        public var description: String {
            switch self {
            case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
            case .unix(let path): return "unix:\(path)"
            }
        }
    }

    case smtp(host: String, port: Int)
    /// RFC 2033: one reply per recipient after the end of data.
    case lmtp(Endpoint)
    case maildir(String)

    public init?(_ s: String) {
        if s.hasPrefix("maildir:") {
            let p = String(s.dropFirst(8))
            guard !p.isEmpty else { return nil }
            self = .maildir(p)
        } else if s.hasPrefix("smtp:") {
            guard let e = Endpoint(String(s.dropFirst(5))), case .tcp(let host, let port) = e, port > 0 else { return nil }
            self = .smtp(host: host, port: port)
        } else if s.hasPrefix("lmtp:") {
            guard let e = Endpoint(String(s.dropFirst(5))) else { return nil }
            if case .tcp(_, let port) = e, port == 0 { return nil }
            self = .lmtp(e)
        } else {
            return nil
        }
    }

    /// Where to connect and whether to speak LMTP; nil for a maildir.
    var relay: (endpoint: Endpoint, lmtp: Bool)? {
        switch self {
        case .smtp(let h, let p): return (.tcp(host: h, port: p), false)
        case .lmtp(let e): return (e, true)
        case .maildir: return nil
        }
    }

    public var description: String {
        switch self {
        case .smtp(let h, let p): return "smtp:" + Endpoint.tcp(host: h, port: p).description
        case .lmtp(let e): return "lmtp:" + e.description
        case .maildir(let p): return "maildir:\(p)"
        }
    }
}
