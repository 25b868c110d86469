import Yams
import SMTPProtocol

/// A listener behind a load balancer that speaks HAProxy's PROXY protocol (v1 or v2, told
/// apart by their first octets), as Postfix's `smtpd_upstream_proxy_protocol = haproxy`.
public struct ListenerProxyConfig: Sendable {
    /// Every connection must begin with a PROXY header, before the greeting.
    public var required = false
    /// The proxies allowed to send one; a connection from anywhere else is refused (421).
    public var addresses: [IPNetwork] = []
    /// Seconds to wait for the whole header (Postfix's `smtpd_upstream_proxy_timeout`).
    public var timeout = 5
    public init() {}
}

extension ConfigLoader.Reader {
    static let proxyKeys: Set = ["proxyRequired", "proxyAddresses", "proxyTimeout"]

    /// A listener's keys `proxyRequired`, `proxyAddresses` (networks), `proxyTimeout`.
    mutating func readProxy(_ key: String, _ v: Node, into p: inout ListenerProxyConfig) {
        switch key {
        case "proxyRequired": if let b = bool(v, key) { p.required = b }
        case "proxyTimeout": if let i = int(v, key, min: 1, max: 300) { p.timeout = i }
        default:
            guard let list = strings(v, key) else { return }
            p.addresses = list.compactMap { s in
                guard let net = IPNetwork(s) else { fail(v, "bad network '\(s)' in proxyAddresses"); return nil }
                return net
            }
        }
    }

    /// A PROXY header is only believed from the listed proxies, so the list must be there.
    mutating func checkProxy(_ l: ListenerConfig, at n: Node) {
        if l.proxy.required && l.proxy.addresses.isEmpty {
            fail(n, "listener '\(l.name)': proxyRequired needs proxyAddresses (the load balancers allowed to send the header)")
        }
        if !l.proxy.required && !l.proxy.addresses.isEmpty {
            fail(n, "listener '\(l.name)': proxyAddresses has no effect without proxyRequired: true")
        }
        if l.proxy.required && l.bind.contains(where: { $0.hasPrefix("unix:") }) {
            fail(n, "listener '\(l.name)': proxyRequired is for TCP listeners, not a unix socket")
        }
    }
}
