import Foundation
import NIOCore
import NIOPosix
import SMTPProtocol
import PolicyEngine
import Checks
import DecisionLog

/// One client connection: a thin driver of `SMTPServerStateMachine`. It reads events from
/// the channel (command lines, the message, timeouts), feeds them to the machine and
/// performs its actions: policy stages, the forwarder, the decision log, replies.
/// Commands are read one line at a time (pipelined commands queue in the inbound stream)
/// and answered in order; a BDAT chunk is read in pieces right after its command line.
final class Session {
    typealias Inbound = NIOAsyncChannelInboundStream<SMTPInbound>.AsyncIterator
    typealias Outbound = NIOAsyncChannelOutboundWriter<ByteBuffer>

    let id: String
    let listener: ListenerConfig
    let helloName: String
    let policy: CompiledPolicy
    let run: PolicyRun
    let shared: GatewayShared
    let handle: SessionHandle
    let idle: IdleTimeoutHandler
    var machine: SMTPServerStateMachine
    /// The client's facts; the rest of each check context comes from the machine.
    let client: CheckContext
    var outbound: Outbound
    /// The message of the transaction in flight, once its DATA has begun, and its spool.
    var message: MessageFacts?
    var spool: MessageSpool?
    /// The message of a transaction sent in BDAT chunks, from its first chunk.
    var chunks: ChunkedMessage?
    /// The forwarder's answer, for the transaction record.
    var delivery: DeliveryOutcome?
    /// Set when a transaction ends while the gateway shuts down.
    var shutdownAfterTransaction = false
    var closeLogged = false
    /// Recipients to keep out of the record being written beyond the machine's own (the
    /// transaction just ended), with `log.redact`.
    var redactAlso: [Mailbox] = []
    /// Verdicts that did not act, waiting to ride on the session's next record (`FoldedChecks`).
    var foldedChecks: [JSONValue] = []
    /// How a proxied connection came (for `session.open`).
    var proxy: JSONValue?
    let started = ContinuousClock.now
    let clientIPText: String

    init(id: String, listener: ListenerConfig, helloName: String, policy: CompiledPolicy, shared: GatewayShared,
         handle: SessionHandle, idle: IdleTimeoutHandler, ip: IPAddress, port: Int, unix: Bool = false, outbound: Outbound) {
        self.idle = idle
        self.id = id
        self.listener = listener
        self.helloName = helloName
        self.policy = policy
        let config = shared.config
        self.run = PolicyRun(policy: policy, isLocalDomain: { config.isLocal(domain: $0) })
        self.shared = shared
        self.handle = handle
        self.outbound = outbound
        self.clientIPText = ip.description
        var mc = listener.machineConfiguration(helloName: helloName, client: ip, unix: unix, gateway: config,
                                               lmtpTarget: shared.forwarder.hasLMTPTarget)
        mc.offersDSN = shared.forwarder.allTargetsOffer("DSN")
        mc.offersREQUIRETLS = shared.forwarder.honoursREQUIRETLS
        self.machine = SMTPServerStateMachine(configuration: mc, sessionID: id)
        var c = CheckContext(sessionID: id, listener: listener.name, clientIP: ip, clientPort: port,
                             clientAuthorized: mc.clientTrusted, maxMessageSize: listener.maxMessageOctets)
        c.receiver = helloName
        self.client = c
    }

    /// 20 hex digits: the connect time in seconds, then 48 random bits. The time lets
    /// `mailgate log why` find the session by binary search, whatever the log's size.
    static func newID() -> String {
        SessionID.make(seconds: UInt32(truncatingIfNeeded: time(nil)), random: UInt64.random(in: 0...0xFFFF_FFFF_FFFF))
    }

    // MARK: Entry

    static func handle(_ conn: NIOAsyncChannel<SMTPInbound, ByteBuffer>, idle: IdleTimeoutHandler, proxy: EventLoopFuture<ProxyHeader>?,
                       listener: ListenerConfig, helloName: String, policy: CompiledPolicy, shared: GatewayShared) async {
        let remote = conn.channel.remoteAddress
        let id = newID()
        guard let origin = await origin(of: conn, proxy: proxy, listener: listener, id: id, shared: shared) else { return }
        let ip = origin.ip, port = origin.port
        if let why = shared.tracker.admit(listener: listener, ip: ip) {
            await refuse(conn, id: id, client: (ip, port), listener: listener, check: "limits",
                         reply: SMTPReply(421, "4.7.0", "Too many connections, try again later"), reason: why, shared: shared)
            return
        }
        defer { shared.tracker.release(listener: listener.name, ip: ip) }
        shared.metrics.connectionOpened(listener: listener.name)
        defer { shared.metrics.connectionClosed(listener: listener.name) }
        let h = SessionHandle(channel: conn.channel)
        shared.registry.add(id, h)
        defer { shared.registry.remove(id) }
        do {
            try await conn.executeThenClose { inbound, outbound in
                let s = make(id: id, listener: listener, helloName: helloName, policy: policy, shared: shared,
                             handle: h, idle: idle, ip: ip, port: port, unix: remote?.pathname != nil, outbound: outbound)
                s.proxy = origin.proxy
                var it = inbound.makeAsyncIterator()
                await s.run(&it, local: conn.channel.localAddress)
            }
        } catch {
            // The connection is gone; the session has logged its close.
        }
    }

    /// A new session, made out of line: inlined into `handle`'s closure, the initialiser's
    /// temporaries were laid out in its async frame (5.7 KB, kept for the connection's life).
    @inline(never)
    static func make(id: String, listener: ListenerConfig, helloName: String, policy: CompiledPolicy, shared: GatewayShared,
                     handle: SessionHandle, idle: IdleTimeoutHandler, ip: IPAddress, port: Int, unix: Bool, outbound: Outbound) -> Session {
        Session(id: id, listener: listener, helloName: helloName, policy: policy, shared: shared,
                handle: handle, idle: idle, ip: ip, port: port, unix: unix, outbound: outbound)
    }

    // MARK: Main loop

    func run(_ inbound: inout Inbound, local: SocketAddress?) async {
        logOpen(local: local)
        if listener.tls.mode == .implicit {
            // TLS from the first byte: the greeting waits for the handshake.
            await awaitHandshake(&inbound)
            if machine.phase == .closed { return }
        }
        // The connect checks' time is ours, not the client's.
        idle.setBusy(true)
        await feed(.connected)
        while true {
            switch machine.phase {
            case .command:
                idle.setBusy(false)
                let event = await nextCommand(&inbound)
                idle.setBusy(true)
                await feed(event)
            case .data:
                await receiveMessage(&inbound)
            case .chunk:
                await receiveChunk(&inbound)
            case .handshake:
                await awaitHandshake(&inbound)
            case .busy:
                // A machine waiting on an answer nobody will give: a bug; never hang on it.
                await feed(.closed(byServer: false, detail: "internal error: the session stalled"))
                return
            case .closed:
                return
            }
        }
    }

    /// The session's first record (out of line: its temporaries would otherwise be laid
    /// out in `run`'s async frame).
    @inline(never)
    func logOpen(local: SocketAddress?) {
        log("session.open", [("port", .int(client.clientPort)), ("listener", .string(listener.name)),
                             ("protocol", .string(listener.dialect.rawValue)),
                             ("local", .string(local.map { $0.pathname.map { "unix:\($0)" } ?? "\($0.ipAddress ?? ""):\($0.port ?? 0)" } ?? ""))]
            + (proxy.map { [("proxy", $0)] } ?? []) + policyFields)
    }

    /// The next line, as a command event (or a line of DATA's text), or the event that
    /// ends reading.
    func nextCommand(_ inbound: inout Inbound) async -> SMTPServerEvent {
        Self.event(await next(&inbound))
    }

    /// A command line from the framer as the machine's event; an end as its event.
    static func event(_ item: Result<SMTPInbound, Ended>) -> SMTPServerEvent {
        switch item {
        case .success(.line(let line)): return .command(line)
        case .success(.text):
            // The framer hands on message text only after the server's 354, which only the
            // data phase reads: this is a bug, never guess.
            return .closed(byServer: false, detail: "internal error: message text out of step")
        case .success(.chunk):
            // The framer hands on chunk data only right after a BDAT line, which the
            // machine always answers by reading it: this is a bug, never guess.
            return .closed(byServer: false, detail: "internal error: BDAT data out of step")
        case .success(.tls):
            // A handshake completes only after STARTTLS's 220 or for implicit TLS, both read
            // by awaitHandshake.
            return .closed(byServer: false, detail: "internal error: TLS handshake out of step")
        case .failure(let ended): return ended.event
        }
    }

    struct Ended: Error { let event: SMTPServerEvent }

    /// The next item from the framer, bounded by the per-read timeout.
    func next(_ inbound: inout Inbound) async -> Result<SMTPInbound, Ended> {
        do {
            guard let item = try await inbound.next() else { return .failure(Ended(event: .closed(byServer: handle.closedByServer, detail: nil))) }
            return .success(item)
        } catch is IdleTimeout {
            return .failure(Ended(event: .timeout))
        } catch {
            return .failure(Ended(event: .closed(byServer: handle.closedByServer, detail: "\(error)")))
        }
    }

    /// The next item of a message (DATA's lines, BDAT's octets), bounded by the per-read
    /// timeout and by dataDeadline from `started`; the idle timer runs while it waits.
    func nextOfMessage(_ inbound: inout Inbound, since started: ContinuousClock.Instant) async -> Result<SMTPInbound, Ended> {
        if ContinuousClock.now - started > .seconds(listener.dataDeadline) { return .failure(Ended(event: .dataDeadlinePassed)) }
        idle.setBusy(false)
        defer { idle.setBusy(true) }
        return await next(&inbound)
    }

    /// Feeds an event and performs the actions, and those of the answers, in order.
    func feed(_ event: SMTPServerEvent) async {
        var queue = machine.handle(event)
        while !queue.isEmpty {
            let action = queue.removeFirst()
            guard let answer = await perform(action) else { continue }
            if case .closed = answer {
                // The connection is gone: no more I/O, but every record is still written.
                queue = queue.filter { if case .log = $0 { return true } else if case .close = $0 { return true } else { return false } }
                if machine.phase == .closed { continue }
            }
            queue += machine.handle(answer)
        }
        if shutdownAfterTransaction && machine.phase == .command {
            shutdownAfterTransaction = false
            await feed(.shutdownRequested)
        }
    }

    /// Performs one action; returns the event that answers it, if any. The actions that
    /// wait are each a call of their own, kept out of line, and the others are done by
    /// `performNow`: a session's task keeps the largest frames it has ever called for as
    /// long as it lives, so this dispatcher must not take in its callees' locals (inlined,
    /// they made it 2.5 KB; with `runStage` and `PolicyRun.run` a third of an idle
    /// connection's memory).
    @inline(never)
    func perform(_ action: SMTPServerAction) async -> SMTPServerEvent? {
        switch action {
        case .send(let r): return await send(r)
        case .runStage(let stage):
            if let d = runStageNow(stage) { return .stageDone(stage, d) }
            return await stageDone(stage)
        case .verifyRecipient(let to): return await verifyRecipient(to)
        case .commit, .deliver: return await forward(action)
        case .checkCredentials(let c): return await checkCredentials(c)
        default: return performNow(action)
        }
    }

    /// Commit and deliver: their transaction (232 octets) is unboxed here, not in `perform`.
    @inline(never)
    func forward(_ action: SMTPServerAction) async -> SMTPServerEvent? {
        switch action {
        case .commit(let t): return await commit(t)
        case .deliver(let t): return await deliver(t)
        default: return nil
        }
    }

    @inline(never)
    func send(_ r: SMTPReply) async -> SMTPServerEvent? {
        do {
            try await outbound.write(ByteBuffer(string: (shared.config.log.idInReplies ? r.referencing(id) : r).encoded))
            return nil
        } catch {
            return .closed(byServer: handle.closedByServer, detail: "write failed: \(error)")
        }
    }

    @inline(never)
    func stageDone(_ stage: Stage) async -> SMTPServerEvent {
        .stageDone(stage, await runStage(stage))
    }

    @inline(never)
    func verifyRecipient(_ to: Mailbox) async -> SMTPServerEvent {
        guard let t = machine.transaction,
              let (target, r) = await shared.forwarder.verifyRecipient(sender: t.sender, parameters: t.parameters, recipient: to)
        else { return .recipientVerified(target: "", reply: nil) }
        return .recipientVerified(target: target, reply: r)
    }

    /// The actions done at once.
    @inline(never)
    func performNow(_ action: SMTPServerAction) -> SMTPServerEvent? {
        switch action {
        case .send, .runStage, .verifyRecipient, .commit, .deliver, .checkCredentials:
            // They wait: `perform` does them.
            return nil
        case .openTransaction:
            guard shared.registry.beginTransaction(handle) else { return .transactionOpened(false) }
            run.beginTransaction()
            message = nil
            spool = nil
            chunks = nil
            delivery = nil
            return .transactionOpened(true)
        case .endTransaction:
            run.endTransaction()
            message = nil
            spool = nil
            chunks = nil
            if shared.registry.endTransaction(handle) { shutdownAfterTransaction = true }
            return nil
        case .admitData:
            return admitData()
        case .receiveData, .receiveChunk, .discardChunk:
            // The run loop reads the message in the phase these leave the machine in.
            return nil
        case .authFailed(let c, let result):
            reportAuthFailure(c, result: result)
            return nil
        case .log(let d):
            logDecision(d)
            return nil
        case .logTransaction(let t, let action, let reply):
            logTransaction(t, action: action, reply: reply)
            return nil
        case .close(let reason, let detail):
            close(reason, detail: detail)
            return nil
        }
    }

    // MARK: Stages

    /// The check context: the client's facts, the machine's state, the message's facts.
    @inline(never)
    func context() -> CheckContext { client.at(machine, message: message, score: run.score) }

    /// Runs a stage of the policy, logging every verdict.
    @inline(never)
    func runStage(_ stage: Stage) async -> SMTPStageOutcome {
        let extra = stageContext(stage)
        let d = await run.run(stage, context: context()) { v in logVerdict(v, extra: extra) }
        return SMTPStageOutcome(d)
    }

    /// The same for a stage where nothing waits; nil where something may.
    @inline(never)
    func runStageNow(_ stage: Stage) -> SMTPStageOutcome? {
        guard !run.waits(at: stage) else { return nil }
        let extra = stageContext(stage)
        guard let d = run.runNow(stage, context: context(), record: { v in logVerdict(v, extra: extra) }) else { return nil }
        return SMTPStageOutcome(d)
    }

    func admitData() -> SMTPServerEvent {
        if !shared.log.isHealthy {
            let r = SMTPReply(451, "4.3.0", "Local error: decision log unavailable, try again later")
            logDecision(SMTPDecision(stage: .data, check: "log", result: "error", action: "tempfail", reply: r, reason: "decision log cannot be written"))
            return .dataAdmitted(r, endsTransaction: false)
        }
        if let r = run.atDataCommand(context(), record: { logVerdict($0, extra: stageContext(.data)) }) {
            return .dataAdmitted(r, endsTransaction: true)
        }
        return .dataAdmitted(nil, endsTransaction: false)
    }

    // MARK: Delivery

    /// The decision is made durable before anything goes downstream: once the downstream
    /// has said 250 no log trouble may turn it into a 451 (and a second copy on retry).
    @inline(never)
    func commit(_ t: SMTPTransaction) async -> SMTPServerEvent {
        do {
            try await shared.log.appendDurably(record("transaction.commit", [
                ("transaction", .string(t.id)), ("recipients", .int(t.recipients.count)), ("size", .int(message?.size ?? 0)),
            ]))
            return .committed(error: nil)
        } catch {
            return .committed(error: "\(error)")
        }
    }

    @inline(never)
    func deliver(_ t: SMTPTransaction) async -> SMTPServerEvent {
        guard let spool else { return .delivered(SMTPDeliveryReport(action: "tempfail", reply: .localError)) }
        let prefix = ReceivedField.text(transaction: t, dialect: listener.dialect, extended: machine.extended, helo: machine.helo,
                                        client: client.clientIP, by: helloName, tls: machine.tls, authenticated: machine.authUser != nil)
            + HeaderField.mergingAuthenticationResults(t.headers, authserv: helloName).map { "\($0.name): \($0.value)\r\n" }.joined()
        let env = Envelope(sender: t.sender, parameters: t.parameters, recipients: t.recipients, recipientParameters: t.recipientParameters)
        let began = ContinuousClock.now
        let d = await shared.forwarder.deliver(env, prefix: prefix, spool: spool)
        shared.metrics.delivery(target: d.target, result: d.kind.rawValue, seconds: (ContinuousClock.now - began).inSeconds)
        delivery = d
        return .delivered(SMTPDeliveryReport(action: d.kind.action, reply: d.reply, perRecipient: d.perRecipient))
    }
}
