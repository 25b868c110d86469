import Foundation
import NIOCore
import NIOPosix
import NIOConcurrencyHelpers
import SMTPProtocol
import PolicyEngine
import Checks
import Greylist
import DecisionLog
import LogSink
import DNSResolver

/// Counts connections per listener and per client address.
final class ConnectionTracker: @unchecked Sendable {
    private let lock = NSLock()
    private var total: [String: Int] = [:]
    private var perIP: [String: [IPAddress: Int]] = [:]

    /// Returns nil when admitted, or why not.
    func admit(listener: ListenerConfig, ip: IPAddress) -> String? {
        lock.lock(); defer { lock.unlock() }
        let t = total[listener.name, default: 0]
        if listener.connectionLimit > 0 && t >= listener.connectionLimit {
            return "connectionLimit \(listener.connectionLimit) reached"
        }
        let p = perIP[listener.name, default: [:]][ip, default: 0]
        if listener.connectionLimitPerIP > 0 && p >= listener.connectionLimitPerIP {
            return "connectionLimitPerIP \(listener.connectionLimitPerIP) reached for \(ip)"
        }
        total[listener.name] = t + 1
        perIP[listener.name, default: [:]][ip] = p + 1
        return nil
    }

    func release(listener: String, ip: IPAddress) {
        lock.lock(); defer { lock.unlock() }
        total[listener, default: 1] -= 1
        let p = perIP[listener]?[ip] ?? 1
        if p <= 1 { perIP[listener]?[ip] = nil } else { perIP[listener]?[ip] = p - 1 }
    }
}

/// A session as the shutdown logic sees it.
final class SessionHandle: @unchecked Sendable {
    let channel: Channel
    /// Guarded by the registry's lock.
    var inTransaction = false
    /// Written by shutdown, read by the session's task: behind its own lock.
    private let closedBox = NIOLockedValueBox(false)
    var closedByServer: Bool {
        get { closedBox.withLockedValue { $0 } }
        set { closedBox.withLockedValue { $0 = newValue } }
    }
    init(channel: Channel) { self.channel = channel }
}

/// Live sessions, for a graceful shutdown.
final class SessionRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var sessions: [String: SessionHandle] = [:]
    private(set) var shuttingDown = false

    func add(_ id: String, _ h: SessionHandle) { lock.lock(); sessions[id] = h; lock.unlock() }
    func remove(_ id: String) { lock.lock(); sessions[id] = nil; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return sessions.count }

    /// Marks a session as inside a transaction. False when the gateway is shutting down:
    /// the session must answer 421 instead.
    func beginTransaction(_ h: SessionHandle) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if shuttingDown { return false }
        h.inTransaction = true
        return true
    }

    /// Ends a transaction. True when the gateway is shutting down and the session should
    /// say 421 and close now.
    func endTransaction(_ h: SessionHandle) -> Bool {
        lock.lock(); defer { lock.unlock() }
        h.inTransaction = false
        return shuttingDown
    }

    /// Starts the shutdown; returns the sessions to close at once (those between
    /// transactions).
    func beginShutdown() -> [SessionHandle] {
        lock.lock(); defer { lock.unlock() }
        shuttingDown = true
        return sessions.values.filter { !$0.inTransaction }
    }

    func all() -> [SessionHandle] { lock.lock(); defer { lock.unlock() }; return Array(sessions.values) }
}

/// Enforces connectionTimeout as a deadline for a whole line (Postfix's
/// smtpd_per_request_deadline): from the moment the session waits for the client, the next
/// complete line must arrive within the timeout, however the client trickles its bytes in.
/// Past it, fires `IdleTimeout` into the pipeline; the session answers 421 4.4.2 and closes.
/// Time the session spends on checks or on the downstream does not count against the
/// client. (Writes are watched by an IdleStateHandler: a client that does not read its
/// replies for that long is closed.)
struct IdleTimeout: Error {}

final class IdleTimeoutHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = SMTPInbound
    typealias InboundOut = SMTPInbound
    let timeout: TimeAmount
    private struct State {
        var busy = false
        /// When the session last began to wait for the client.
        var waitingSince = NIODeadline.now()
    }
    private let state = NIOLockedValueBox(State())
    // Event loop only:
    private var context: ChannelHandlerContext?
    private var lastLine = NIODeadline.now()
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    /// True while the session works on a command rather than waits for input. Cheap: a
    /// lock, no event-loop hop; the timer reads it when it fires.
    func setBusy(_ busy: Bool) {
        state.withLockedValue { s in
            if s.busy && !busy { s.waitingSince = .now() }
            s.busy = busy
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        lastLine = .now()
        schedule(at: lastLine + timeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastLine = .now()
        context.fireChannelRead(data)
    }

    private func schedule(at deadline: NIODeadline) {
        guard let loop = context?.eventLoop else { return }
        timer = loop.scheduleTask(deadline: deadline) { [self] in check() }
    }

    private func check() {
        guard let context else { return }
        let (busy, since) = state.withLockedValue { ($0.busy, $0.waitingSince) }
        let start = max(since, lastLine)
        if busy {
            schedule(at: .now() + timeout)
        } else if start + timeout <= .now() {
            context.fireErrorCaught(IdleTimeout())
        } else {
            schedule(at: start + timeout)
        }
    }
}

/// Closes a connection whose client has not read its replies for connectionTimeout.
final class WriteStallHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? IdleStateHandler.IdleStateEvent, e == .write {
            if !context.channel.isWritable { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// The compiled policy of each listener, swapped as a whole on reload.
final class PolicySet: Sendable {
    private let box: NIOLockedValueBox<[String: CompiledPolicy]>
    init(_ p: [String: CompiledPolicy]) { box = NIOLockedValueBox(p) }
    var current: [String: CompiledPolicy] { box.withLockedValue { $0 } }
    func swap(_ p: [String: CompiledPolicy]) { box.withLockedValue { $0 = p } }
}

/// Everything the sessions of all listeners share.
final class GatewayShared: Sendable {
    let config: GatewayConfig
    let log: DecisionLog
    let forwarder: Forwarder
    let tracker = ConnectionTracker()
    let registry = SessionRegistry()
    let metrics = GatewayMetrics()
    let redactor: LogRedactor
    /// Every listener's name: an incoming Authentication-Results naming any of them is a
    /// forgery (RFC 8601 §5) and is removed on every listener.
    let authservIDs: Set<String>
    /// SMTP AUTH's users, when `auth.passwdFile` is set.
    let authenticator: Authenticator?
    /// Where each failed AUTH is told in one stable line (stderr; fail2ban reads it).
    let authFailureLine: @Sendable (String) -> Void
    /// The shared PostgreSQL sink the log is shipped to, when `log.postgres` is set.
    let logSink: PostgresLogSink?

    init(config: GatewayConfig, log: DecisionLog, forwarder: Forwarder, authenticator: Authenticator? = nil,
         authFailureLine: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.config = config
        self.log = log
        self.logSink = try config.log.postgres.map { try PostgresLogSink(url: $0, gateway: config.log.gatewayName, log: log) }
        self.forwarder = forwarder
        self.authenticator = authenticator
        self.authFailureLine = authFailureLine
        self.authservIDs = Set(config.listeners.map { AuthenticationResults.normalised($0.resolvedHelloName) })
        self.redactor = LogRedactor(mode: config.log.redact, key: config.log.redactKey)
    }
}

/// The gateway: binds every listener, runs a session per connection, shuts down gracefully.
public final class GatewayServer: @unchecked Sendable {
    public let config: GatewayConfig
    public let log: DecisionLog
    let shared: GatewayShared
    let group: EventLoopGroup
    let lock = NSLock()
    private var serverChannels: [(String, Channel)] = []
    private var acceptTasks: [Task<Void, Never>] = []
    private let unclaimed = UnclaimedConnections()
    private var watcher: Task<Void, Never>?

    /// Checks appended to every listener's policy, for embedding and tests (the
    /// configuration names the built-in ones).
    let extraChecks: [PolicyCheck]
    let policies: PolicySet
    /// The resolver every DNS check asks, and the DNSBL zones' health.
    public let resolver: DNSResolver
    let catalog: CheckCatalog
    private var selfTester: Task<Void, Never>?
    private var metricsChannel: Channel?
    var sinkTask: Task<Void, Never>?

    /// Where `/metrics` and `/health` are served, when `metrics.listen` is set.
    public var metricsAddress: SocketAddress? { lock.withLock { metricsChannel?.localAddress } }
    private var purger: Task<Void, Never>?
    /// The greylist store (opened at start when a policy greylists) and its clock.
    public let greylist: GreylistService
    /// Each TLS listener's certificates, by listener name.
    let tlsStores: [String: TLSContextStore]

    /// Compiles every listener's policy; throws `PolicyErrors` when one is invalid.
    public init(config: GatewayConfig, log: DecisionLog, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                extraChecks: [any Check] = [], onError: FailureMode = .tempfail, greylistClock: (@Sendable () -> Int64)? = nil,
                authFailureLine: @escaping @Sendable (String) -> Void = GatewayServer.standardErrorLine) throws {
        self.config = config
        self.log = log
        self.group = group
        self.extraChecks = extraChecks.map { PolicyCheck($0, onError: onError) }
        let hello = config.listeners.first?.resolvedHelloName ?? "localhost"
        self.shared = try GatewayShared(config: config, log: log,
                                    forwarder: try Forwarder(config: config.downstream, helloName: hello, group: group),
                                    authenticator: try config.auth.passwdFile.map { try Authenticator(config.auth, path: $0) },
                                    authFailureLine: authFailureLine)
        let metrics = shared.metrics
        log.observeWrites { metrics.logWrite(seconds: $0, octets: $1) }
        self.resolver = GatewayServer.makeResolver(config.dns, group: group) { metrics.dnsQuery(seconds: $0, result: $1) }
        self.greylist = GreylistService(config: config.greylist, clock: greylistClock) { metrics.greylistCheck(seconds: $0, ok: $1) }
        self.catalog = CheckCatalog(resolver: resolver, greylist: greylist)
        self.policies = PolicySet(try GatewayServer.compilePolicies(config, catalog: catalog, extra: self.extraChecks))
        self.tlsStores = try GatewayServer.makeTLSStores(config)
    }

    static func makeResolver(_ d: DNSConfig, group: EventLoopGroup,
                             observer: (@Sendable (Double, String) -> Void)? = nil) -> DNSResolver {
        var rc = ResolverConfig(servers: d.servers.isEmpty ? NameServer.fromResolvConf() : d.servers.compactMap { NameServer($0) })
        rc.observer = observer
        rc.timeout = d.timeout
        rc.attempts = d.attempts
        rc.cacheSize = d.cacheSize
        rc.maxInFlight = d.maxInFlight
        return DNSResolver(config: rc, group: group)
    }

    /// The policy each listener runs, by listener name.
    static func compilePolicies(_ config: GatewayConfig, catalog: CheckCatalog, extra: [PolicyCheck] = []) throws -> [String: CompiledPolicy] {
        var out: [String: CompiledPolicy] = [:]
        var cache: [String: CompiledPolicy] = [:]
        for l in config.listeners {
            var p: CompiledPolicy
            if let path = config.policyPath(for: l) {
                if let c = cache[path] {
                    p = c
                } else {
                    p = try PolicyLoader.load(path: path, factory: catalog, checkTimeout: .seconds(config.checkTimeout))
                    cache[path] = p
                }
            } else {
                p = builtinPolicy(for: l, config: config)
            }
            if !extra.isEmpty {
                p = CompiledPolicy(name: p.name, version: p.version, path: p.path, description: p.description, monitor: p.monitor,
                                   deferRejection: p.deferRejection, checks: p.checks + extra, rules: p.rules,
                                   thresholds: p.thresholds, checkTimeout: p.checkTimeout, files: p.files)
            }
            out[l.name] = p
        }
        return out
    }

    /// Without a policy file: the listener's handlerchain with the `checks` settings, no rules.
    static func builtinPolicy(for l: ListenerConfig, config: GatewayConfig) -> CompiledPolicy {
        var chain = l.handlerchain
        // The size limit is a resource bound, not an opinion: it is always enforced.
        if l.maxmessagesize > 0 && !chain.contains("size") { chain.insert("size", at: 0) }
        let checks: [PolicyCheck] = chain.compactMap { name in
            switch name {
            case "size": return PolicyCheck(SizeCheck(), onError: .tempfail)
            case "helo":
                var o = HeloCheck.Options()
                o.literalMustMatchClient = config.helo.literalMustMatchClient
                o.checkAuthorized = config.helo.checkAuthorized
                o.reject = config.helo.reject
                o.score = config.helo.score
                return PolicyCheck(HeloCheck(options: o), onError: .pass)
            default: return nil
            }
        }
        let h = config.helo
        let fingerprint = chain.joined(separator: ",") + "|\(h.literalMustMatchClient),\(h.checkAuthorized),\(h.reject),\(h.score)"
        return CompiledPolicy(name: "builtin", version: PolicyLoader.version(of: [("builtin", Array(fingerprint.utf8))]), path: nil,
                              description: "the listener's handlerchain", checks: checks, checkTimeout: .seconds(config.checkTimeout))
    }

    /// Recompiles the policies from their files. A policy that does not compile is refused
    /// and logged, and every listener keeps the policy it had; otherwise the new policies
    /// serve new sessions from now on, and sessions in flight finish under the old. Returns
    /// the diagnostics of a refused reload (empty when it took effect).
    @discardableResult
    public func reloadPolicies(reason: String = "sighup") -> [String] {
        let old = policies.current
        do {
            let new = try GatewayServer.compilePolicies(config, catalog: catalog, extra: extraChecks)
            policies.swap(new)
            for l in config.listeners {
                guard let n = new[l.name] else { continue }
                log.append(LogRecord(event: "policy.reload", fields: [
                    ("trigger", .string(reason)), ("result", "ok"), ("listener", .string(l.name)), ("policy", .string(n.name)),
                    ("policy_version", .string(n.version)), ("previous_version", .string(old[l.name]?.version ?? "")),
                ]))
            }
            shared.metrics.policyReload(result: "ok")
            return []
        } catch {
            let lines = (error as? PolicyErrors)?.diagnostics.map(\.description) ?? ["\(error)"]
            log.append(LogRecord(event: "policy.reload", fields: [
                ("trigger", .string(reason)), ("result", "refused"),
                ("reason", .string("the new policy does not compile; the running policy stays in force")),
                ("errors", .array(lines.map { .string($0) })),
                ("running", .array(config.listeners.map { l in .string("\(l.name): \(old[l.name]?.name ?? "?") \(old[l.name]?.version ?? "")") })),
            ]))
            shared.metrics.policyReload(result: "refused")
            return lines
        }
    }

    /// Runs the self-tests of every check that has them (DNSBL zones' test points) and logs
    /// every change of state, loudly.
    public func runSelfTests() async {
        var done = Set<String>()
        for p in policies.current.values {
            for pc in p.checks {
                guard let t = pc.check as? SelfTesting else { continue }
                for r in await t.selfTest() where done.insert("\(r.check)/\(r.subject)/\(r.state)").inserted {
                    log.append(LogRecord(event: "\(r.check).zone", fields: [
                        ("zone", .string(r.subject)), ("state", .string(r.state)), ("reason", .string(r.reason)),
                        ("alert", .bool(r.state == "disabled")),
                    ]))
                    let line = "mailgate: \(r.check) zone \(r.subject) \(r.state): \(r.reason)\n"
                    FileHandle.standardError.write(Data(line.utf8))
                }
            }
        }
    }

    /// The policy a listener's new sessions run.
    public func policy(listener: String) -> CompiledPolicy? { policies.current[listener] }

    /// Looks at the policy files every `interval` and reloads when one changed.
    func watchPolicies(every interval: Int) -> Task<Void, Never> {
        Task { [weak self] in
            var last = self?.policyFingerprint() ?? ""
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(interval))
                guard let self else { return }
                let now = self.policyFingerprint()
                if now != last {
                    last = now
                    self.reloadPolicies(reason: "file-change")
                }
                self.reloadChangedCertificates()
            }
        }
    }

    /// Size and modification time of every file the current policies read, and of the
    /// policy files themselves.
    func policyFingerprint() -> String {
        var files = Set(policies.current.values.flatMap(\.files))
        for l in config.listeners { if let p = config.policyPath(for: l) { files.insert(p) } }
        return files.sorted().map(FileStamp.of).joined(separator: "|")
    }

    /// Raises RLIMIT_NOFILE to its hard limit and logs it (`mailgate serve` calls it once at
    /// start); warns when even that is below what the connection limits can use.
    public func raiseDescriptorLimit() {
        let connections = config.listeners.reduce(0) { $0 + ($1.connectionLimit > 0 ? $1.connectionLimit : 10_000) }
        let needed = ResourceLimits.neededOpenFiles(connections: connections, dnsInFlight: config.dns.maxInFlight)
        let r = ResourceLimits.raiseOpenFiles(needed: needed)
        let enough = r.after >= needed
        shared.log.append(LogRecord(event: "limits.nofile", session: nil, fields: [
            ("before", .int(r.before)), ("after", .int(r.after)), ("needed", .int(needed)), ("alert", .bool(!enough)),
        ]))
        if !enough {
            FileHandle.standardError.write(Data("mailgate: descriptor limit \(r.after) is below the \(needed) the connection limits can use; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower connectionLimit\n".utf8))
        }
    }

    /// Binds all listeners and starts accepting.
    public func start() async throws {
        startLogSink()
        for l in config.listeners {
            for b in l.bind {
                guard let addr = BindAddress(b) else { continue }
                try await listen(l, on: addr)
            }
        }
        if let m = config.metrics.listen, let addr = BindAddress(m) {
            let policies = self.policies, health = catalog.health
            let zones: @Sendable () -> [(zone: String, inService: Bool)] = {
                let all = Set(policies.current.values.flatMap { p in p.checks.compactMap { $0.check as? DNSBLCheck }.flatMap { $0.options.zones.map(\.zone) } })
                return all.sorted().map { ($0, health.disabled($0) == nil) }
            }
            let channel = try await MetricsServer.start(on: addr, group: group, shared: shared, probes: healthProbes(), zones: zones)
            lock.withLock { metricsChannel = channel }
        }
        if config.dns.selfTestInterval > 0 {
            let t = Task { [weak self] in
                while !Task.isCancelled {
                    await self?.runSelfTests()
                    try? await Task.sleep(for: .seconds(self?.config.dns.selfTestInterval ?? 300))
                }
            }
            lock.withLock { selfTester = t }
        }
        if config.policyWatch > 0 {
            let t = watchPolicies(every: config.policyWatch)
            lock.withLock { watcher = t }
        }
        // A policy that greylists: open the store now (PostgreSQL: create the schema), in the
        // background, so that a database that is down delays nothing but is logged.
        if policies.current.values.contains(where: { $0.checks.contains { $0.check.name == "greylist" } }) {
            Task { [weak self] in
                await self?.logGreylistStore("greylist.store") { try await $0.prepare(); return [] }
            }
        }
        if config.greylist.purgeInterval > 0 {
            let t = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(self?.config.greylist.purgeInterval ?? 3600))
                    guard !Task.isCancelled else { return }
                    await self?.purgeGreylist()
                }
            }
            lock.withLock { purger = t }
        }
    }

    /// Deletes greylist entries past their time (if a check has opened the store) and logs
    /// how many, or why it could not.
    public func purgeGreylist() async {
        guard greylist.openedStore != nil else { return }
        await logGreylistStore("greylist.purge") { [("removed", .int(try await $0.purge()))] }
    }

    /// Runs one piece of store work and logs it: `result` ok with what it returns, or error
    /// with the reason.
    func logGreylistStore(_ event: String, _ work: (GreylistService) async throws -> [(String, JSONValue)]) async {
        var fields: [(String, JSONValue)] = [("store", .string(config.greylist.store.rawValue))]
        do {
            fields += [("result", "ok")] + (try await work(greylist))
        } catch {
            fields += [("result", "error"), ("reason", .string("\(error)"))]
        }
        log.append(LogRecord(event: event, fields: fields))
    }

    typealias Accepted = (NIOAsyncChannel<SMTPInbound, ByteBuffer>, IdleTimeoutHandler, EventLoopFuture<ProxyHeader>?)
    struct ListenError: Error, CustomStringConvertible { let description: String }

    /// Binds one address of a listener (TCP, or a unix socket given its file mode) and
    /// starts its accept loop.
    func listen(_ l: ListenerConfig, on addr: BindAddress) async throws {
        let unclaimed = self.unclaimed
        let timeout = TimeAmount.seconds(Int64(l.connectionTimeout))
        let tls = tlsStores[l.name].map { (store: $0, implicit: l.tls.mode == .implicit) }
        let proxyTimeout: TimeAmount? = l.proxy.required ? .seconds(Int64(l.proxy.timeout)) : nil
        let initializer: @Sendable (Channel) -> EventLoopFuture<Accepted> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let idle = try SessionPipeline.configure(channel, timeout: timeout, tls: tls)
                let proxy = try proxyTimeout.map { t in
                    let h = ProxyHeaderHandler(eventLoop: channel.eventLoop, timeout: t)
                    try channel.pipeline.syncOperations.addHandler(h, position: .first)
                    return h.header
                }
                // Up to 128 buffered items (lines or BDAT pieces, each ≤ 1000 octets, so
                // ≤ 128 KB) per connection before reading pauses: enough that pipelined
                // commands and DATA lines do not toggle the socket's read interest line by line.
                let async = try NIOAsyncChannel<SMTPInbound, ByteBuffer>(wrappingChannelSynchronously: channel, configuration: .init(backPressureStrategy: .init(lowWatermark: 32, highWatermark: 128)))
                unclaimed.hold(async)
                return (async, idle, proxy)
            }
        }
        let bootstrap = ServerBootstrap(group: group).serverChannelOption(.backlog, value: Int32(l.connectBacklog))
        let server: NIOAsyncChannel<Accepted, Never>
        if let path = addr.unixPath {
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
            guard chmod(path, mode_t(l.socketMode)) == 0 else {
                try? await server.channel.close()
                throw ListenError(description: "\(path): cannot set socketMode \(String(l.socketMode, radix: 8)): \(String(cString: strerror(errno)))")
            }
        } else {
            server = try await bootstrap.serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: addr.host, port: addr.port, childChannelInitializer: initializer)
        }
        lock.withLock { serverChannels.append((l.name, server.channel)) }
        let shared = self.shared
        let policies = self.policies
        let helloName = l.resolvedHelloName
        let task = Task {
            _ = try? await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await (conn, idle, proxy) in inbound {
                        unclaimed.claim(conn)
                        // The policy is taken when the session starts and kept to its end.
                        guard let policy = policies.current[l.name] else { UnclaimedConnections.discard(conn); continue }
                        group.addTask {
                            await Session.handle(conn, idle: idle, proxy: proxy, listener: l, helloName: helloName, policy: policy, shared: shared)
                        }
                    }
                }
            }
        }
        lock.withLock { acceptTasks.append(task) }
    }

    /// What `/health` asks besides the log and the downstream: the DNS servers when a policy
    /// runs a check that asks DNS, the greylist store when one greylists.
    func healthProbes() -> [HealthProbe] {
        let names = Set(policies.current.values.flatMap { $0.checks.map(\.check.name) })
        var p: [HealthProbe] = []
        if !names.isDisjoint(with: ["dnsbl", "rdns", "helodns", "spf", "dkim"]) { p.append(.dns(resolver)) }
        if names.contains("greylist") { p.append(.greylist(greylist)) }
        return p
    }

    /// The addresses the listeners are bound to (useful with port 0).
    public func boundAddresses(listener: String? = nil) -> [SocketAddress] {
        lock.lock(); defer { lock.unlock() }
        return serverChannels.filter { listener == nil || $0.0 == listener }.compactMap { $0.1.localAddress }
    }

    public var activeSessions: Int { shared.registry.count }

    /// Stops accepting; sessions between transactions get 421 at once; transactions in
    /// flight get `grace` to finish; then the rest get 421 too. Closes the log last.
    public func shutdown(grace: Duration? = nil) async {
        let grace = grace ?? .seconds(config.shutdownGracePeriod)
        let channels = lock.withLock { serverChannels.map(\.1) }
        for c in channels { try? await c.close() }
        if let m = lock.withLock({ metricsChannel }) { try? await m.close() }
        log.append(LogRecord(event: "gateway.shutdown", fields: [("grace_s", .int(Int(grace.components.seconds)))]))
        for h in shared.registry.beginShutdown() { Self.closeWith421(h) }
        let deadline = ContinuousClock.now + grace
        while shared.registry.count > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for h in shared.registry.all() { Self.closeWith421(h) }
        lock.withLock { watcher }?.cancel()
        lock.withLock { selfTester }?.cancel()
        lock.withLock { purger }?.cancel()
        let tasks = lock.withLock { acceptTasks }
        for t in tasks { await t.value }
        unclaimed.drain()
        shared.forwarder.shutdown()
        await greylist.close()
        try? await log.flush()
        await stopLogSink()
    }

    static func closeWith421(_ h: SessionHandle) {
        h.closedByServer = true
        let ch = h.channel
        ch.writeAndFlush(ByteBuffer(string: SMTPReply.shuttingDown.encoded)).whenComplete { _ in ch.close(promise: nil) }
    }
}
