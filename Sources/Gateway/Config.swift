/// Gateway: the running gateway — listeners, SMTP sessions, the downstream client and the
/// configuration that ties them together.
///
/// This module is the NIO glue around the pure parts: `SMTPProtocol` frames and parses,
/// `PolicyEngine` runs the checks, `DecisionLog` records; here a listener accepts
/// connections, a session drives one client through the stages, the message is spooled
/// (memory, then a temporary file) and forwarded to the downstream SMTP server or Maildir,
/// and the client hears 250 only after the downstream has said 250.
import Foundation
import SMTPProtocol
import DNSResolver
import Yams
import Greylist
import DecisionLog
import PostgresSupport

/// One listener, with James' option names and meanings.
public struct ListenerConfig: Sendable {
    public enum HelloName: Sendable, Equatable {
        case autodetect
        case name(String)
    }
    public var name = "smtp"
    /// `address:port` to bind; `[::1]:25` for IPv6.
    public var bind: [String] = ["127.0.0.1:2525"]
    public var connectBacklog = 200
    public var helloName: HelloName = .autodetect
    public var smtpGreeting: String?
    /// Seconds the client has for each whole command line (and each DATA line) once the
    /// gateway waits for it; bytes trickled in do not extend it.
    public var connectionTimeout = 300
    /// Seconds the whole DATA phase may take, from 354 to the final dot.
    public var dataDeadline = 1800
    /// 0 = unlimited. James' default is unlimited; ours bounds a connection flood.
    public var connectionLimit = 1000
    public var connectionLimitPerIP = 0
    /// KB (1024 octets); 0 = unlimited.
    public var maxmessagesize = 0
    public var maxRecipients = 100
    public var maxUnrecognizedCommands = 10
    public var heloEhloEnforcement = true
    public var addressBracketsEnforcement = true
    public var authorizedAddresses: [IPNetwork] = [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!]
    /// `tls`, `tlsRequired`, `tlsCertificates`, `tlsMinVersion`, `tlsCiphers`.
    public var tls = ListenerTLSConfig()
    /// PROXY protocol from a load balancer (`proxyRequired`, `proxyAddresses`, `proxyTimeout`).
    public var proxy = ListenerProxyConfig()
    /// James' authRequired: false (AUTH not offered), true (offered outside
    /// authorizedAddresses, needed to relay), announce (always offered).
    public var authRequired = SMTPAuthMode.off
    /// Offer AUTH before STARTTLS (default: only under TLS).
    public var authAllowPlaintext = false
    /// An authenticated user's MAIL FROM must be one of its addresses.
    public var verifyIdentity = true
    /// smtp, or lmtp (RFC 2033: LHLO, a reply per recipient after the end of data).
    public var `protocol` = "smtp"
    /// File mode of a `unix:` bind's socket.
    public var socketMode = 0o660
    public var handlerchain: [String] = ["size", "helo"]
    /// A policy file for this listener, overriding the top-level `policy`.
    public var policy: String?
    var handlerchainSet = false

    public init() {}

    public var maxMessageOctets: Int {
        let (v, overflow) = maxmessagesize.multipliedReportingOverflow(by: 1024)
        return overflow ? Int.max : v
    }
    /// The largest `maxmessagesize` accepted (KB): 4 GiB.
    public static let maxMessageSizeCeiling = 4 * 1024 * 1024

    public var resolvedHelloName: String {
        switch helloName {
        case .name(let n): return n
        case .autodetect:
            var buf = [CChar](repeating: 0, count: 256)
            guard gethostname(&buf, buf.count) == 0 else { return "localhost" }
            let len = buf.firstIndex(of: 0) ?? buf.count
            let h = String(decoding: buf[..<len].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return h.isEmpty ? "localhost" : h
        }
    }

    public func isAuthorized(_ ip: IPAddress) -> Bool {
        authorizedAddresses.contains { $0.contains(ip) }
    }
}

public struct DownstreamConfig: Sendable {
    public var targets: [String] = ["maildir:var/mail"]
    public var connectTimeout = 10
    public var commandTimeout = 60
    public var dataTimeout = 600
    public var retryPeriod = 60
    public var poolSize = 16
    public var maxMessagesPerConnection = 1000
    /// Ask the downstream about each recipient at RCPT time and pass its refusal on then
    /// (Postfix' reject_unverified_recipient, without a cache). Costs a round trip per RCPT.
    public var verifyRecipients = false
    /// STARTTLS toward relay targets: `tls`, `tlsVerify`, `tlsCAFile`, `tlsName`.
    public var tls = DownstreamTLSConfig()
    public init() {}
}

/// `metrics.listen`: where `/metrics` (Prometheus) and `/health` (JSON) are served; nil: off.
public struct MetricsConfig: Sendable {
    public var listen: String?
    public init() {}
}

public struct LogConfig: Sendable {
    public var path = "var/decisions.log"
    /// "group" or "fsync".
    public var durability = "group"
    public var groupCommitMs = 5
    /// Appends ` [id SESSION]` to every 4xx and 5xx reply, so a bounce names the session
    /// `mailgate log why` explains (as Haraka's `deny_includes_uuid`).
    public var idInReplies = true
    /// Rotation (`rotateSize` in MiB, `rotateDaily`) and retention (`retentionDays`).
    public var rotation = LogRotation()
    /// Recipients' local parts in the log: off, hash (with `redactKey`) or drop.
    public var redact = LogRedaction.off
    public var redactKey: String?
    /// The shared PostgreSQL sink (`postgres://mailgate_writer:…@host/db`); nil: off.
    public var postgres: String?
    /// This gateway's name in the sink (one chain each); the host name when not set.
    public var gateway: String?
    public init() {}

    /// The name this gateway's records carry in the sink.
    public var gatewayName: String {
        if let g = gateway { return g }
        var buf = [CChar](repeating: 0, count: 256)
        return gethostname(&buf, buf.count - 1) == 0 ? String(cString: buf) : "mailgate"
    }
}

/// The resolver's settings.
public struct DNSConfig: Sendable {
    /// `IP` or `IP:PORT`; empty: the nameservers of /etc/resolv.conf.
    public var servers: [String] = []
    public var timeout = 2.0
    public var attempts = 2
    public var cacheSize = 10_000
    /// DNS questions in flight at once, over all sessions (each holds a socket).
    public var maxInFlight = 512
    /// Seconds between DNSBL zone self-tests (RFC 5782 test points); 0 = never.
    public var selfTestInterval = 300
    public init() {}
}

public struct HeloCheckConfig: Sendable {
    public var literalMustMatchClient = false
    public var checkAuthorized = false
    public var reject = true
    public var score = 1.0
    public init() {}
}

public struct GatewayConfig: Sendable {
    public var listeners: [ListenerConfig] = [ListenerConfig()]
    public var domains: [String] = ["localhost", "localhost.localdomain"]
    public var downstream = DownstreamConfig()
    public var log = LogConfig()
    public var spoolDirectory = "var/spool"
    public var spoolMemoryLimit = 256 * 1024
    public var shutdownGracePeriod = 30
    public var checkTimeout = 30
    public var helo = HeloCheckConfig()
    /// The policy file (policies/*.yaml) every listener uses unless it names its own. Without
    /// one, a listener runs its handlerchain with the `checks` settings and no rules.
    public var policy: String?
    /// Seconds between looks at the policy files for changes (0: only on SIGHUP).
    public var policyWatch = 0
    /// The metrics and health endpoint (off by default).
    public var metrics = MetricsConfig()
    public var dns = DNSConfig()
    /// The greylist store, keys and times, for every policy that runs the greylist check.
    public var greylist = GreylistConfig()
    public var auth = AuthConfig()
    /// Accept `user%remote@local`, `remote!user@local` and `"user@remote"@local` from clients
    /// outside authorizedAddresses (Postfix's `allow_untrusted_routing`). Off: they get 550.
    public var allowUntrustedRouting = false

    public init() {}

    /// The policy file of a listener, if any.
    public func policyPath(for l: ListenerConfig) -> String? { l.policy ?? policy }

    public static let knownChecks: Set<String> = ["size", "helo"]

    public func isLocal(domain: String) -> Bool {
        var d = domain.lowercased()
        if d.hasSuffix(".") { d.removeLast() }
        if domains.contains(where: { $0.lowercased() == d }) { return true }
        // The A-label and U-label forms of a local domain are the same domain (IDNA 2008).
        guard d.contains("xn--") || !d.utf8.allSatisfy({ $0 < 0x80 }), let asked = DNSName.asked(d) else { return false }
        return domains.contains { DNSName.asked($0.lowercased()) == asked }
    }
}

/// A configuration error at a place in the file.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int
    public var message: String
    public var description: String { "\(file):\(line): \(message)" }
}

/// Reads the YAML configuration, refusing unknown keys and bad values with `file:line`.
public enum ConfigLoader {
    public static func load(path: String) throws -> GatewayConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw [ConfigError(file: path, line: 0, message: "cannot read file")]
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    /// Throws `[ConfigError]` listing every problem found.
    public static func parse(_ text: String, file: String) throws -> GatewayConfig {
        var r = Reader(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            var line = 0
            if case .scanner(_, _, let mark, _) = e { line = mark.line }
            if case .parser(_, _, let mark, _) = e { line = mark.line }
            throw [ConfigError(file: file, line: line, message: "YAML syntax error: \(e)")]
        }
        var cfg = GatewayConfig()
        if let root { r.readRoot(root, into: &cfg) }
        if !r.errors.isEmpty { throw r.errors.sorted { $0.line < $1.line } }
        return cfg
    }

    struct Reader {
        let file: String
        var errors: [ConfigError] = []

        mutating func fail(_ n: Node?, _ msg: String) {
            errors.append(ConfigError(file: file, line: n?.mark?.line ?? 0, message: msg))
        }

        mutating func mapping(_ n: Node, _ what: String, allowed: Set<String>) -> [(String, Node, Node)] {
            guard let m = n.mapping else { fail(n, "\(what) must be a mapping"); return [] }
            var out: [(String, Node, Node)] = []
            var seen = Set<String>()
            for (k, v) in m {
                guard let key = k.string else { fail(k, "\(what): keys must be strings"); continue }
                if !allowed.contains(key) {
                    fail(k, "unknown key '\(key)' in \(what) (known: \(allowed.sorted().joined(separator: ", ")))")
                    continue
                }
                if !seen.insert(key).inserted { fail(k, "duplicate key '\(key)' in \(what)") }
                out.append((key, k, v))
            }
            return out
        }

        /// An integer in `min...max`. The default ceiling (10^9) keeps every product the
        /// gateway makes of a setting (seconds to nanoseconds, KB to octets) inside Int.
        mutating func int(_ n: Node, _ key: String, min: Int = 0, max: Int = 1_000_000_000) -> Int? {
            guard let s = n.scalar?.string, let v = Int(s) else { fail(n, "'\(key)' must be an integer"); return nil }
            guard v >= min else { fail(n, "'\(key)' must be at least \(min)"); return nil }
            guard v <= max else { fail(n, "'\(key)' must be at most \(max)"); return nil }
            return v
        }

        mutating func bool(_ n: Node, _ key: String) -> Bool? {
            switch n.scalar?.string.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: fail(n, "'\(key)' must be true or false"); return nil
            }
        }

        mutating func string(_ n: Node, _ key: String) -> String? {
            guard let s = n.scalar?.string else { fail(n, "'\(key)' must be a string"); return nil }
            return s
        }

        mutating func strings(_ n: Node, _ key: String) -> [String]? {
            if let s = n.scalar?.string { return s.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            guard let seq = n.sequence else { fail(n, "'\(key)' must be a list"); return nil }
            var out: [String] = []
            for item in seq {
                guard let s = item.scalar?.string else { fail(item, "'\(key)' entries must be strings"); continue }
                out.append(s)
            }
            return out
        }

        mutating func readRoot(_ n: Node, into c: inout GatewayConfig) {
            let keys: Set = ["listeners", "domains", "downstream", "log", "spool", "shutdownGracePeriod", "checks", "policy", "policyWatch", "dns", "greylist", "allowUntrustedRouting", "auth", "metrics"]
            var listenerNodes: [Node] = []
            var heloNode: Node?
            for (key, _, v) in mapping(n, "top level", allowed: keys) {
                switch key {
                case "listeners":
                    guard let seq = v.sequence, seq.count > 0 else { fail(v, "'listeners' must be a non-empty list"); continue }
                    c.listeners = seq.map { readListener($0) }
                    listenerNodes = Array(seq)
                    var names = Set<String>()
                    for (i, l) in c.listeners.enumerated() where !names.insert(l.name).inserted {
                        fail(Array(seq)[i], "duplicate listener name '\(l.name)'")
                    }
                case "domains":
                    if let d = strings(v, key) {
                        for s in d where !AddressParser.isDomain(Substring(s), allowUTF8: true) { fail(v, "'\(s)' is not a domain name") }
                        c.domains = d
                    }
                case "downstream": readDownstream(v, into: &c.downstream)
                case "log": readLog(v, into: &c.log)
                case "metrics":
                    for (k, _, mv) in mapping(v, "metrics", allowed: ["listen"]) where k == "listen" {
                        guard let s = string(mv, k) else { continue }
                        guard let b = BindAddress(s), b.unixPath == nil else { fail(mv, "'metrics.listen' must be address:port, e.g. 127.0.0.1:9325"); continue }
                        _ = b
                        c.metrics.listen = s
                    }
                case "spool":
                    for (k, _, sv) in mapping(v, "spool", allowed: ["directory", "memoryLimit"]) {
                        if k == "directory", let s = string(sv, k) { c.spoolDirectory = s }
                        if k == "memoryLimit", let i = int(sv, k, min: 4096) { c.spoolMemoryLimit = i }
                    }
                case "shutdownGracePeriod": if let i = int(v, key) { c.shutdownGracePeriod = i }
                case "checks":
                    readChecks(v, into: &c)
                    heloNode = v.mapping?.first { $0.key.string == "helo" }?.key
                case "policy": if let s = string(v, key) { c.policy = s }
                case "policyWatch": if let i = int(v, key) { c.policyWatch = i }
                case "allowUntrustedRouting": if let b = bool(v, key) { c.allowUntrustedRouting = b }
                case "dns":
                    for (k, _, dv) in mapping(v, "dns", allowed: ["servers", "timeout", "attempts", "cacheSize", "maxInFlight", "selfTestInterval"]) {
                        switch k {
                        case "servers":
                            if let l = strings(dv, k) {
                                for x in l where NameServer(x) == nil { fail(dv, "bad nameserver '\(x)' (want IP or IP:PORT)") }
                                c.dns.servers = l
                            }
                        case "timeout":
                            if let t = dv.scalar?.string, let d = Double(t), d > 0, d <= 30 { c.dns.timeout = d } else { fail(dv, "'timeout' must be a number of seconds, above 0 and at most 30") }
                        case "attempts": if let i = int(dv, k, min: 1) { c.dns.attempts = i }
                        case "cacheSize": if let i = int(dv, k, min: 0) { c.dns.cacheSize = i }
                        case "maxInFlight": if let i = int(dv, k, min: 1, max: 100_000) { c.dns.maxInFlight = i }
                        default: if let i = int(dv, k) { c.dns.selfTestInterval = i }
                        }
                    }
                case "greylist": readGreylist(v, into: &c.greylist)
                case "auth": readAuth(v, into: &c.auth)
                default: break
                }
            }
            if c.auth.passwdFile == nil, let l = c.listeners.first(where: { $0.authRequired != .off }) {
                fail(n, "listener '\(l.name)': authRequired \(l.authRequired.rawValue) needs auth.passwdFile")
            }
            // checks.helo configures the handlerchain's helo check; with a policy on every
            // listener nothing would read it.
            if let h = heloNode, !c.listeners.contains(where: { c.policyPath(for: $0) == nil }) {
                fail(h, "checks.helo applies only to listeners without a policy; set the helo check's settings in the policy")
            }
            // A policy chooses its checks: a handlerchain beside it would be silently ignored.
            for (i, l) in c.listeners.enumerated() where l.handlerchainSet && c.policyPath(for: l) != nil {
                fail(i < listenerNodes.count ? listenerNodes[i] : n,
                     "listener '\(l.name)' sets a handlerchain and runs policy \(c.policyPath(for: l)!): the policy chooses the checks; remove one")
            }
        }

        mutating func readGreylist(_ n: Node, into g: inout GreylistConfig) {
            let keys: Set = ["store", "path", "url", "delay", "window", "lifetime", "autoAllowAfter", "ipv4Prefix", "ipv6Prefix",
                             "byReverseDomain", "purgeInterval"]
            for (k, _, v) in mapping(n, "greylist", allowed: keys) {
                switch k {
                case "store":
                    if let st = (v.scalar?.string).flatMap(GreylistConfig.Store.init(rawValue:)) { g.store = st } else { fail(v, "'store' must be sqlite, postgresql or memory") }
                case "path": if let s = string(v, k) { g.path = s }
                case "url":
                    if let s = string(v, k) {
                        if (try? PostgresURL.configuration(s)) != nil { g.url = s } else { fail(v, "'url' must be postgres://user:password@host:port/database") }
                    }
                case "delay": if let i = int(v, k) { g.settings.delay = i }
                case "window": if let i = int(v, k, min: 1) { g.settings.window = i }
                case "lifetime": if let i = int(v, k, min: 1) { g.settings.lifetime = i }
                case "autoAllowAfter": if let i = int(v, k) { g.settings.autoAllowAfter = i }
                case "ipv4Prefix":
                    if let i = int(v, k, min: 8) { if i <= 32 { g.key.v4Prefix = i } else { fail(v, "'ipv4Prefix' must be 8 to 32") } }
                case "ipv6Prefix":
                    if let i = int(v, k, min: 16) { if i <= 128 { g.key.v6Prefix = i } else { fail(v, "'ipv6Prefix' must be 16 to 128") } }
                case "byReverseDomain": if let b = bool(v, k) { g.key.byReverseDomain = b }
                default: if let i = int(v, k) { g.purgeInterval = i }
                }
            }
            if g.store == .postgresql && g.url == nil { fail(n, "greylist store postgresql needs 'url'") }
            if g.settings.window <= g.settings.delay { fail(n, "greylist 'window' must be longer than 'delay'") }
        }

        mutating func readChecks(_ n: Node, into c: inout GatewayConfig) {
            for (key, _, v) in mapping(n, "checks", allowed: ["timeout", "helo", "size"]) {
                switch key {
                case "timeout": if let i = int(v, key, min: 1) { c.checkTimeout = i }
                case "size": _ = mapping(v, "checks.size", allowed: [])
                case "helo":
                    for (k, _, hv) in mapping(v, "checks.helo", allowed: ["literalMustMatchClient", "checkAuthorized", "reject", "score"]) {
                        switch k {
                        case "literalMustMatchClient": if let b = bool(hv, k) { c.helo.literalMustMatchClient = b }
                        case "checkAuthorized": if let b = bool(hv, k) { c.helo.checkAuthorized = b }
                        case "reject": if let b = bool(hv, k) { c.helo.reject = b }
                        case "score":
                            if let s = hv.scalar?.string, let d = Double(s) { c.helo.score = d } else { fail(hv, "'score' must be a number") }
                        default: break
                        }
                    }
                default: break
                }
            }
        }

        mutating func readListener(_ n: Node) -> ListenerConfig {
            var l = ListenerConfig()
            let keys: Set = ["name", "bind", "connectBacklog", "tls", "helloName", "smtpGreeting", "connectionTimeout",
                             "connectionLimit", "connectionLimitPerIP", "authRequired", "authorizedAddresses",
                             "verifyIdentity", "dataDeadline", "maxmessagesize", "heloEhloEnforcement", "addressBracketsEnforcement",
                             "handlerchain", "maxRecipients", "maxUnrecognizedCommands", "protocol", "policy", "socketMode",
                             "tlsRequired", "tlsCertificates", "tlsMinVersion", "tlsCiphers", "authAllowPlaintext"]
            for (key, _, v) in mapping(n, "listener", allowed: keys.union(Self.proxyKeys)) {
                switch key {
                case "name": if let s = string(v, key) { l.name = s }
                case "bind":
                    if let b = strings(v, key) {
                        for s in b where BindAddress(s) == nil { fail(v, "bad bind address '\(s)' (want address:port, [v6]:port or unix:/path)") }
                        l.bind = b
                    }
                case "connectBacklog": if let i = int(v, key, min: 1) { l.connectBacklog = i }
                case "tls", "tlsRequired", "tlsCertificates", "tlsMinVersion", "tlsCiphers":
                    readTLS(key, v, into: &l.tls)
                case "proxyRequired", "proxyAddresses", "proxyTimeout":
                    readProxy(key, v, into: &l.proxy)
                case "helloName":
                    if let m = v.mapping {
                        var auto = false, name: String?
                        for (k, _, hv) in mapping(Node.mapping(m), "helloName", allowed: ["autodetect", "name"]) {
                            if k == "autodetect" { auto = bool(hv, k) ?? false }
                            if k == "name" { name = string(hv, k) }
                        }
                        l.helloName = auto ? .autodetect : .name(name.flatMap { $0.isEmpty ? nil : $0 } ?? "localhost")
                    } else if let s = string(v, key) {
                        l.helloName = s == "autodetect" ? .autodetect : .name(s.isEmpty ? "localhost" : s)
                    }
                case "smtpGreeting": if let s = string(v, key) { l.smtpGreeting = s }
                case "connectionTimeout": if let i = int(v, key, min: 1, max: 86400) { l.connectionTimeout = i }
                case "dataDeadline": if let i = int(v, key, min: 1, max: 86400) { l.dataDeadline = i }
                case "connectionLimit": if let i = int(v, key) { l.connectionLimit = i }
                case "connectionLimitPerIP": if let i = int(v, key) { l.connectionLimitPerIP = i }
                case "authRequired":
                    if let s = string(v, key) {
                        guard let m = SMTPAuthMode(rawValue: s.lowercased()) else { fail(v, "'authRequired' must be true, false or announce"); continue }
                        l.authRequired = m
                    }
                case "authAllowPlaintext": if let b = bool(v, key) { l.authAllowPlaintext = b }
                case "authorizedAddresses":
                    if let list = strings(v, key) {
                        var nets: [IPNetwork] = []
                        for s in list {
                            if let net = IPNetwork(s) ?? resolveHostNetwork(s) { nets.append(net) } else { fail(v, "bad network '\(s)' in authorizedAddresses") }
                        }
                        l.authorizedAddresses = nets
                    }
                case "verifyIdentity": if let b = bool(v, key) { l.verifyIdentity = b }
                case "maxmessagesize": if let i = int(v, key, max: ListenerConfig.maxMessageSizeCeiling) { l.maxmessagesize = i }
                case "heloEhloEnforcement": if let b = bool(v, key) { l.heloEhloEnforcement = b }
                case "addressBracketsEnforcement": if let b = bool(v, key) { l.addressBracketsEnforcement = b }
                case "maxRecipients": if let i = int(v, key, min: 1) { l.maxRecipients = i }
                case "maxUnrecognizedCommands": if let i = int(v, key, min: 1) { l.maxUnrecognizedCommands = i }
                case "socketMode":
                    // Octal, as chmod takes it: "0660".
                    if let s = string(v, key) {
                        if let m = Int(s, radix: 8), (0...0o777).contains(m) { l.socketMode = m } else { fail(v, "'socketMode' must be an octal file mode such as \"0660\"") }
                    }
                case "protocol":
                    if let s = string(v, key) {
                        if s.lowercased() != "smtp" && s.lowercased() != "lmtp" { fail(v, "'protocol' must be smtp or lmtp") }
                        l.protocol = s.lowercased()
                    }
                case "handlerchain":
                    if let list = strings(v, key) {
                        for s in list where !GatewayConfig.knownChecks.contains(s) {
                            fail(v, "unknown check '\(s)' in handlerchain (known: \(GatewayConfig.knownChecks.sorted().joined(separator: ", ")))")
                        }
                        l.handlerchain = list
                        l.handlerchainSet = true
                    }
                case "policy": if let s = string(v, key) { l.policy = s }
                default: break
                }
            }
            if l.tls.mode != .off && l.tls.certificates.isEmpty { fail(n, "listener '\(l.name)': tls needs 'tlsCertificates'") }
            if l.tls.required && l.tls.mode == .off { fail(n, "listener '\(l.name)': tlsRequired needs tls: true or implicit") }
            checkProxy(l, at: n)
            return l
        }

        /// James allows a host name with an optional mask (`localhost/8`); resolved once at
        /// load time.
        func resolveHostNetwork(_ s: String) -> IPNetwork? {
            let parts = s.split(separator: "/", maxSplits: 1)
            guard let first = parts.first else { return nil }
            let host = String(first)
            guard AddressParser.isDomain(Substring(host), allowUTF8: false) else { return nil }
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &res) == 0, let first = res else { return nil }
            defer { freeaddrinfo(res) }
            var ip: IPAddress?
            if first.pointee.ai_family == AF_INET {
                let sin = UnsafeRawPointer(first.pointee.ai_addr).load(as: sockaddr_in.self)
                ip = .v4(UInt32(bigEndian: sin.sin_addr.s_addr))
            } else if first.pointee.ai_family == AF_INET6 {
                let sin6 = UnsafeRawPointer(first.pointee.ai_addr).load(as: sockaddr_in6.self)
                ip = IPAddress(v6Bytes: withUnsafeBytes(of: sin6.sin6_addr) { Array($0) })
            }
            guard let addr = ip else { return nil }
            let maskText = parts.count == 2 ? "/\(parts[1])" : ""
            return IPNetwork("\(addr)\(maskText)")
        }

        mutating func readDownstream(_ n: Node, into d: inout DownstreamConfig) {
            let keys: Set = ["targets", "connectTimeout", "commandTimeout", "dataTimeout", "retryPeriod", "poolSize", "maxMessagesPerConnection",
                             "verifyRecipients", "tls", "tlsVerify", "tlsCAFile", "tlsName"]
            for (key, _, v) in mapping(n, "downstream", allowed: keys) {
                switch key {
                case "targets":
                    if let t = strings(v, key) {
                        if t.isEmpty { fail(v, "'targets' must not be empty") }
                        for s in t where DownstreamTarget(s) == nil { fail(v, "bad target '\(s)' (want smtp:host:port, lmtp:host:port, lmtp:unix:/path or maildir:PATH)") }
                        d.targets = t
                    }
                case "connectTimeout": if let i = int(v, key, min: 1) { d.connectTimeout = i }
                case "commandTimeout": if let i = int(v, key, min: 1) { d.commandTimeout = i }
                case "dataTimeout": if let i = int(v, key, min: 1) { d.dataTimeout = i }
                case "retryPeriod": if let i = int(v, key) { d.retryPeriod = i }
                case "poolSize": if let i = int(v, key) { d.poolSize = i }
                case "maxMessagesPerConnection": if let i = int(v, key, min: 1) { d.maxMessagesPerConnection = i }
                case "verifyRecipients": if let b = bool(v, key) { d.verifyRecipients = b }
                case "tls":
                    if let s = string(v, key) {
                        if let m = DownstreamTLSConfig.Mode(rawValue: s.lowercased()) { d.tls.mode = m } else { fail(v, "'tls' must be off, opportunistic or required") }
                    }
                case "tlsVerify": if let b = bool(v, key) { d.tls.verify = b }
                case "tlsCAFile": d.tls.caFile = string(v, key)
                case "tlsName": d.tls.name = string(v, key)
                default: break
                }
            }
            if d.tls.mode == .required, let u = d.targets.first(where: { $0.hasPrefix("lmtp:unix:") }) {
                fail(n, "downstream tls: required cannot be honoured toward the unix socket '\(u)' (no STARTTLS on a local socket)")
            }
        }

        mutating func readLog(_ n: Node, into l: inout LogConfig) {
            for (key, _, v) in mapping(n, "log", allowed: ["path", "durability", "groupCommitMs", "idInReplies", "rotateSize", "rotateDaily", "retentionDays", "redact", "redactKey", "postgres", "gateway"]) {
                switch key {
                case "path": if let s = string(v, key) { l.path = s }
                case "durability":
                    if let s = string(v, key) {
                        guard ["group", "fsync"].contains(s) else { fail(v, "'durability' must be group or fsync"); continue }
                        l.durability = s
                    }
                case "groupCommitMs": if let i = int(v, key, min: 1) { l.groupCommitMs = i }
                case "idInReplies": if let b = bool(v, key) { l.idInReplies = b }
                case "rotateSize": if let i = int(v, key, min: 0, max: 1 << 20) { l.rotation.maxOctets = i << 20 }
                case "rotateDaily": if let b = bool(v, key) { l.rotation.daily = b }
                case "redact":
                    if let s = string(v, key) {
                        guard let m = LogRedaction(rawValue: s) else { fail(v, "'redact' must be off, hash or drop"); continue }
                        l.redact = m
                    }
                case "redactKey": if let s = string(v, key) { l.redactKey = s }
                case "postgres":
                    if let s = string(v, key) {
                        guard (try? PostgresURL.configuration(s)) != nil else { fail(v, "'postgres' must be postgres://user:password@host:port/database"); continue }
                        l.postgres = s
                    }
                case "gateway":
                    if let s = string(v, key) {
                        guard !s.isEmpty, s.utf8.count <= 64, s.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else { fail(v, "'gateway' must be 1 to 64 printable ASCII characters without spaces"); continue }
                        l.gateway = s
                    }
                case "retentionDays": if let i = int(v, key, min: 0, max: 36500) { l.rotation.retentionDays = i }
                default: break
                }
            }
        }
    }
}

extension Array: @retroactive Error where Element == ConfigError {}

/// `host:port` or `[v6]:port`.
public struct BindAddress: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// `unix:/absolute/path`: a unix-domain socket instead of host and port.
    public var unixPath: String?

    public init?(_ s: String) {
        if s.hasPrefix("unix:") {
            let path = String(s.dropFirst(5))
            // sun_path holds 107 octets and a NUL.
            guard path.hasPrefix("/"), path.utf8.count <= 107, !path.utf8.contains(0) else { return nil }
            host = ""
            port = 0
            unixPath = path
            return
        }
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":"),
                  let p = Int(s[s.index(close, offsetBy: 2)...]) else { return nil }
            host = String(s[s.index(after: s.startIndex)..<close])
            port = p
        } else {
            guard let colon = s.lastIndex(of: ":"), let p = Int(s[s.index(after: colon)...]) else { return nil }
            host = String(s[..<colon])
            if host.contains(":") { return nil }
            port = p
        }
        guard (0...65535).contains(port), IPAddress(host) != nil || host == "localhost" else { return nil }
    }
}

