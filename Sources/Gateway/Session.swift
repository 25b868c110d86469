import Foundation
import NIOCore
import NIOPosix
import SMTPProtocol
import PolicyEngine
import Checks
import DecisionLog

/// One client connection, driven through the stages. Commands are read one line at a time
/// (pipelined commands simply queue in the inbound stream) and answered in order.
final class Session {
    typealias Inbound = NIOAsyncChannelInboundStream<SMTPLine>.AsyncIterator
    typealias Outbound = NIOAsyncChannelOutboundWriter<ByteBuffer>

    struct Transaction {
        var id: String
        var sender: ReversePath
        var parameters: MailParameters
        var recipients: [Mailbox] = []
        var rcptAttempted = false
        var headers: [HeaderField] = []
    }

    enum CloseReason: String { case quit, clientClosed = "client-closed", timeout, tooManyErrors = "too-many-errors",
                                    shutdown, refused, connectRejected = "connect-rejected", error, forbiddenCommand = "forbidden-command" }

    let id: String
    let listener: ListenerConfig
    let helloName: String
    let policy: CompiledPolicy
    let run: PolicyRun
    let shared: GatewayShared
    let handle: SessionHandle
    let idle: IdleTimeoutHandler
    var ctx: CheckContext
    var outbound: Outbound
    var helo: String?
    var esmtp = false
    var txn: Transaction?
    var transactions = 0
    /// Refused commands since the last accepted message (Postfix's hard error count).
    var errors = 0
    /// HELO, EHLO, NOOP, RSET, VRFY and HELP since the last accepted message; past
    /// `maxJunkCommands` each one also counts as an error.
    var junk = 0
    /// True while answering a client command (not the greeting or a timeout).
    var answering = false
    var closeLogged = false
    let started = ContinuousClock.now
    let clientIPText: String

    init(id: String, listener: ListenerConfig, helloName: String, policy: CompiledPolicy, shared: GatewayShared,
         handle: SessionHandle, idle: IdleTimeoutHandler, ip: IPAddress, port: Int, outbound: Outbound) {
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
        self.ctx = CheckContext(sessionID: id, listener: listener.name, clientIP: ip, clientPort: port,
                                clientAuthorized: listener.isAuthorized(ip), maxMessageSize: listener.maxMessageOctets)
        self.ctx.receiver = helloName
    }

    static func newID() -> String {
        let v = UInt64.random(in: 0...UInt64.max)
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    // MARK: Entry

    static func handle(_ conn: NIOAsyncChannel<SMTPLine, ByteBuffer>, idle: IdleTimeoutHandler, listener: ListenerConfig, helloName: String,
                       policy: CompiledPolicy, shared: GatewayShared) async {
        let remote = conn.channel.remoteAddress
        let ip: IPAddress = remote?.ipAddress.flatMap { IPAddress($0) } ?? .v4(0)
        let port = remote?.port ?? 0
        let id = newID()
        if let why = shared.tracker.admit(listener: listener, ip: ip) {
            shared.log.append(LogRecord(event: "session.refused", session: id, fields: [
                ("client", .string(ip.description)), ("port", .int(port)), ("listener", .string(listener.name)),
                ("stage", "connect"), ("check", "limits"), ("action", "tempfail"),
                ("reply", .string(SMTPReply(421, "4.7.0", "Too many connections, try again later").summary)), ("reason", .string(why)),
            ]))
            try? await conn.executeThenClose { _, outbound in
                try await outbound.write(ByteBuffer(string: SMTPReply(421, "4.7.0", "Too many connections, try again later").encoded))
            }
            return
        }
        defer { shared.tracker.release(listener: listener.name, ip: ip) }
        let h = SessionHandle(channel: conn.channel)
        shared.registry.add(id, h)
        defer { shared.registry.remove(id) }
        do {
            try await conn.executeThenClose { inbound, outbound in
                let s = Session(id: id, listener: listener, helloName: helloName, policy: policy, shared: shared,
                                handle: h, idle: idle, ip: ip, port: port, outbound: outbound)
                var it = inbound.makeAsyncIterator()
                await s.run(&it, local: conn.channel.localAddress)
            }
        } catch {
            // The connection is gone; the session has logged its close.
        }
    }

    // MARK: Logging

    func record(_ event: String, _ fields: [(String, JSONValue)]) -> LogRecord {
        LogRecord(event: event, session: id, fields: [("client", .string(clientIPText))] + fields)
    }

    func log(_ event: String, _ fields: [(String, JSONValue)]) {
        shared.log.append(record(event, fields))
    }

    /// One verdict record: a check's, or a decision the session makes itself (protocol,
    /// relay, limits…), in the same shape.
    func logDecision(stage: Stage, check: String, result: String, action: String, reply: SMTPReply?, reason: String?,
                     score: Double = 0, durationMicros: Int? = nil, extra: [(String, JSONValue)] = []) {
        var f: [(String, JSONValue)] = [("stage", .string(stage.rawValue)), ("check", .string(check)), ("result", .string(result)),
                                        ("action", .string(action))]
        if let r = reply { f.append(("reply", .string(r.summary))) }
        if let r = reason { f.append(("reason", .string(r))) }
        if score != 0 { f.append(("score", .double(score))) }
        if let d = durationMicros { f.append(("duration_ms", .double(Double(d) / 1000))) }
        log("verdict", f + extra + policyFields)
    }

    var policyFields: [(String, JSONValue)] { [("policy", .string(policy.name)), ("policy_version", .string(policy.version))] }

    /// A verdict of the policy: a check's result, a rule that fired, a threshold.
    func logVerdict(_ v: PolicyVerdict, extra: [(String, JSONValue)]) {
        var f: [(String, JSONValue)] = [("stage", .string(v.stage.rawValue)), ("check", .string(v.check))]
        if let r = v.rule { f.append(("rule", .string(r))) }
        if let p = v.place { f.append(("rule_file", .string(p))) }
        f += [("result", .string(v.result)), ("action", .string(v.action))]
        if let r = v.reply { f.append(("reply", .string(r.summary))) }
        if let r = v.reason { f.append(("reason", .string(r))) }
        if v.score != 0 { f.append(("score", .double(v.score))) }
        if let w = v.would { f.append(("monitor", .bool(true))); f.append(("would", .string(w))) }
        if let d = v.deferredTo { f.append(("deferred_to", .string(d.rawValue))) }
        if let o = v.overriddenBy { f.append(("overridden_by", .string(o))) }
        if !v.headers.isEmpty { f.append(("headers", .array(v.headers.map { .string("\($0.name): \($0.value)") }))) }
        if let d = v.durationMicros { f.append(("duration_ms", .double(Double(d) / 1000))) }
        log("verdict", f + extra + policyFields)
    }

    func stageContext(_ stage: Stage) -> [(String, JSONValue)] {
        var f: [(String, JSONValue)] = []
        if let t = txn, stage >= .mail { f.append(("sender", .string(t.sender.description))) }
        if stage == .rcpt, let r = ctx.recipient { f.append(("recipient", .string(r.description))) }
        return f
    }

    /// Runs a stage of the policy, logging every verdict.
    func runStage(_ stage: Stage) async -> StageDecision {
        let extra = stageContext(stage)
        let decision = await run.run(stage, context: ctx) { v in logVerdict(v, extra: extra) }
        ctx.score = run.score
        txn?.headers += decision.headers
        return decision
    }

    // MARK: I/O

    /// The most harmless commands a client may repeat between accepted messages before each
    /// counts as an error (Postfix's smtpd_junk_command_limit).
    static let maxJunkCommands = 100

    /// Sends a reply. A 5xx answer to a command counts as an error (unknown verbs, syntax,
    /// bad sequence, relay and policy refusals; Postfix's hard error count). Temporary
    /// answers (greylisting, our own trouble) do not. Past maxUnrecognizedCommands the client
    /// gets 421 instead and the session ends (returns false).
    func send(_ r: SMTPReply) async -> Bool {
        if answering, r.code >= 500, !countError() {
            return await closeForErrors()
        }
        return await write(r)
    }

    /// Counts an error; false when the limit is passed.
    func countError() -> Bool {
        errors += 1
        return errors <= listener.maxUnrecognizedCommands
    }

    func closeForErrors() async -> Bool {
        logDecision(stage: currentStage, check: "protocol", result: "too-many-errors", action: "tempfail", reply: .tooManyErrors,
                    reason: "\(errors) refused commands (limit maxUnrecognizedCommands \(listener.maxUnrecognizedCommands))")
        _ = await write(.tooManyErrors)
        close(.tooManyErrors)
        return false
    }

    func write(_ r: SMTPReply) async -> Bool {
        do {
            try await outbound.write(ByteBuffer(string: r.encoded))
            return true
        } catch {
            return false
        }
    }

    func close(_ reason: CloseReason, detail: String? = nil) {
        if closeLogged { return }
        closeLogged = true
        let d = (ContinuousClock.now - started).components
        var f: [(String, JSONValue)] = [("reason", .string(reason.rawValue)), ("transactions", .int(transactions)),
                                        ("duration_ms", .int(Int(d.seconds) * 1000 + Int(d.attoseconds / 1_000_000_000_000_000)))]
        if let d = detail { f.append(("detail", .string(d))) }
        log("session.close", f)
    }

    // MARK: Main loop

    func run(_ inbound: inout Inbound, local: SocketAddress?) async {
        log("session.open", [("port", .int(ctx.clientPort)), ("listener", .string(listener.name)),
                             ("local", .string(local.map { "\($0.ipAddress ?? ""):\($0.port ?? 0)" } ?? ""))] + policyFields)
        // The connect checks' time is ours, not the client's.
        idle.setBusy(true)
        let connect = await runStage(.connect)
        switch connect.action {
        case .reject(let r):
            _ = await send(r)
            close(.connectRejected, detail: r.summary)
            return
        case .tempfail(let r):
            _ = await send(SMTPReply(code: 421, enhanced: r.enhanced, lines: r.lines))
            close(.connectRejected, detail: r.summary)
            return
        default: break
        }
        let greeting = listener.smtpGreeting.map { SMTPReply(code: 220, enhanced: nil, lines: [$0]) }
            ?? SMTPReply(code: 220, enhanced: nil, lines: ["\(helloName) ESMTP MailGate ready"])
        guard await send(greeting) else { close(.clientClosed); return }
        idle.setBusy(false)

        while true {
            let line: SMTPLine?
            do {
                line = try await inbound.next()
            } catch is IdleTimeout {
                _ = await send(.timeout)
                logDecision(stage: currentStage, check: "protocol", result: "timeout", action: "tempfail", reply: .timeout,
                            reason: "no command for \(listener.connectionTimeout)s")
                close(.timeout)
                return
            } catch {
                close(handle.closedByServer ? .shutdown : .clientClosed, detail: "\(error)")
                return
            }
            guard let line else {
                close(handle.closedByServer ? .shutdown : .clientClosed)
                return
            }
            idle.setBusy(true)
            answering = true
            let keepGoing = await command(line, &inbound)
            answering = false
            idle.setBusy(false)
            if !keepGoing { return }
        }
    }

    var currentStage: Stage {
        if let t = txn { return t.recipients.isEmpty ? .mail : .rcpt }
        return helo == nil ? .connect : .helo
    }

    /// Handles one command line; false ends the session.
    func command(_ line: SMTPLine, _ inbound: inout Inbound) async -> Bool {
        if line.overflow || line.wireLength > 512 {
            logDecision(stage: currentStage, check: "protocol", result: "line-too-long", action: "reject", reply: .lineTooLong,
                        reason: "command line of \(line.wireLength)\(line.overflow ? "+" : "") octets exceeds 512")
            return await send(.lineTooLong)
        }
        let text = String(decoding: line.bytes.readableBytesView, as: UTF8.self)
        let parsed = CommandParser.parse(text, options: CommandParserOptions(addressBracketsEnforcement: listener.addressBracketsEnforcement),
                                         transactionUTF8: txn?.parameters.smtpUTF8 ?? false)
        let cmd: SMTPCommand
        switch parsed {
        case .failure(.unrecognized(let verb)):
            if ["GET", "POST", "HEAD", "PUT", "CONNECT", "USER"].contains(verb) {
                let r = SMTPReply(421, "4.7.0", "This is an SMTP server; closing connection")
                logDecision(stage: currentStage, check: "protocol", result: "forbidden-command", action: "tempfail", reply: r,
                            reason: "\(verb) command: HTTP or other protocol sent to SMTP")
                _ = await send(r)
                close(.forbiddenCommand)
                return false
            }
            logDecision(stage: currentStage, check: "protocol", result: "unrecognized", action: "reject",
                        reply: CommandError.unrecognized(verb).reply, reason: "unrecognized command \(verb)")
            return await send(CommandError.unrecognized(verb).reply)
        case .failure(.syntax(let r)):
            logDecision(stage: currentStage, check: "protocol", result: "syntax", action: r.isTransient ? "tempfail" : "reject",
                        reply: r, reason: "bad syntax: \(String(text.prefix(100)))")
            return await send(r)
        case .success(let c):
            cmd = c
        }

        switch cmd {
        case .helo, .ehlo, .noop, .rset, .vrfy, .help:
            junk += 1
            if junk > Session.maxJunkCommands && !countError() {
                logDecision(stage: currentStage, check: "protocol", result: "junk-commands", action: "tempfail", reply: .tooManyErrors,
                            reason: "more than \(Session.maxJunkCommands) \(cmd.verb)/NOOP/RSET/VRFY/HELP/HELO commands without a message")
                return await closeForErrors()
            }
        default: break
        }
        switch cmd {
        case .helo(let name), .ehlo(let name):
            return await greet(name, extended: { if case .ehlo = cmd { return true } else { return false } }())
        case .mail(let from, let params):
            return await mail(from, params)
        case .rcpt(let to):
            return await rcpt(to)
        case .data:
            return await data(&inbound)
        case .rset:
            if txn != nil { endTransaction() }
            return await send(SMTPReply(250, "2.0.0", "Reset OK"))
        case .noop:
            return await send(.ok)
        case .quit:
            _ = await send(SMTPReply(221, "2.0.0", "\(helloName) closing connection"))
            close(.quit)
            return false
        case .vrfy:
            return await send(SMTPReply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"))
        case .expn:
            return await send(SMTPReply(502, "5.5.1", "EXPN not available"))
        case .help:
            return await send(SMTPReply(214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"))
        case .starttls, .auth, .bdat:
            let r = SMTPReply(502, "5.5.1", "\(cmd.verb) not available")
            logDecision(stage: currentStage, check: "protocol", result: "not-implemented", action: "reject", reply: r, reason: "\(cmd.verb) is not offered")
            return await send(r)
        }
    }

    func badSequence(_ text: String) async -> Bool {
        let r = SMTPReply.badSequence(text)
        logDecision(stage: currentStage, check: "protocol", result: "bad-sequence", action: "reject", reply: r, reason: text)
        return await send(r)
    }

    // MARK: HELO / EHLO

    func greet(_ name: String, extended: Bool) async -> Bool {
        if txn != nil { endTransaction() }
        ctx.heloVerb = extended ? "EHLO" : "HELO"
        ctx.helo = name
        let outcome = await runStage(.helo)
        if let r = outcome.action.reply {
            helo = nil
            ctx.helo = nil
            return await send(r)
        }
        helo = name
        esmtp = extended
        let first = "\(helloName) Hello \(name) [\(clientIPText)]"
        if !extended { return await send(SMTPReply(code: 250, enhanced: nil, lines: [first])) }
        let size = listener.maxMessageOctets > 0 ? "SIZE \(listener.maxMessageOctets)" : "SIZE"
        return await send(SMTPReply(code: 250, enhanced: nil,
                                    lines: [first, "PIPELINING", size, "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "HELP"]))
    }

    // MARK: MAIL

    func mail(_ from: ReversePath, _ params: MailParameters) async -> Bool {
        if listener.heloEhloEnforcement && helo == nil { return await badSequence("Send HELO/EHLO first") }
        if txn != nil { return await badSequence("Nested MAIL command") }
        if !esmtp && (params.size != nil || params.body != nil || params.smtpUTF8) {
            let r = SMTPReply(555, "5.5.4", "MAIL parameters require EHLO")
            logDecision(stage: .mail, check: "protocol", result: "syntax", action: "reject", reply: r, reason: "ESMTP parameters after HELO")
            return await send(r)
        }
        guard shared.registry.beginTransaction(handle) else {
            _ = await send(.shuttingDown)
            close(.shutdown)
            return false
        }
        transactions += 1
        txn = Transaction(id: "\(id).\(transactions)", sender: from, parameters: params)
        ctx.sender = from
        ctx.mailParameters = params
        ctx.recipients = []
        ctx.recipient = nil
        ctx.headers = []
        ctx.messageSize = 0
        ctx.messageTruncated = false
        run.beginTransaction()
        let outcome = await runStage(.mail)
        if let r = outcome.action.reply {
            endTransaction()
            return await send(r)
        }
        return await send(SMTPReply(250, "2.1.0", "Sender <\(from)> OK"))
    }

    /// Ends the transaction; true when the gateway is shutting down meanwhile.
    @discardableResult
    func endTransaction() -> Bool {
        txn = nil
        ctx.sender = nil
        ctx.mailParameters = nil
        ctx.recipients = []
        ctx.recipient = nil
        run.endTransaction()
        ctx.score = run.score
        return shared.registry.endTransaction(handle)
    }

    // MARK: RCPT

    func rcpt(_ given: Mailbox) async -> Bool {
        guard txn != nil else { return await badSequence("Need MAIL before RCPT") }
        // `user@local.` is the same mailbox as `user@local`; it is forwarded without the dot.
        let to = given.withoutTrailingDot
        txn!.rcptAttempted = true
        ctx.recipient = to
        if txn!.recipients.count >= listener.maxRecipients {
            let r = SMTPReply(452, "4.5.3", "Too many recipients")
            logDecision(stage: .rcpt, check: "limits", result: "too-many-recipients", action: "tempfail", reply: r,
                        reason: "more than maxRecipients \(listener.maxRecipients)", extra: stageContext(.rcpt))
            return await send(r)
        }
        let local = to.domain.isEmpty || shared.config.isLocal(domain: to.domain)
        if let refusal = RelayControl.check(to, isLocal: local, clientTrusted: ctx.clientAuthorized, client: clientIPText,
                                            allowUntrustedRouting: shared.config.allowUntrustedRouting) {
            logDecision(stage: .rcpt, check: "relay", result: refusal.result, action: "reject", reply: refusal.reply,
                        reason: refusal.reason, extra: stageContext(.rcpt))
            return await send(refusal.reply)
        }
        if !local {
            logDecision(stage: .rcpt, check: "relay", result: "authorized", action: "continue", reply: nil,
                        reason: "client \(clientIPText) matches authorizedAddresses", extra: stageContext(.rcpt))
        }
        let outcome = await runStage(.rcpt)
        if let r = outcome.action.reply { return await send(r) }
        if shared.config.downstream.verifyRecipients, !to.domain.isEmpty,
           let (target, r) = await shared.forwarder.verifyRecipient(sender: txn!.sender, parameters: txn!.parameters, recipient: to) {
            if !r.isPositive {
                logDecision(stage: .rcpt, check: "downstream", result: "refused", action: r.isTransient ? "tempfail" : "reject", reply: r,
                            reason: "\(target) refused the recipient at verification", extra: stageContext(.rcpt))
                return await send(r)
            }
        }
        txn!.recipients.append(to)
        ctx.recipients.append(to)
        return await send(SMTPReply(250, "2.1.5", "Recipient <\(to)> OK"))
    }

    // MARK: DATA

    func data(_ inbound: inout Inbound) async -> Bool {
        guard let t = txn else { return await badSequence("Need MAIL command") }
        if t.recipients.isEmpty {
            if t.rcptAttempted {
                let r = SMTPReply(554, "5.5.1", "No valid recipients")
                logDecision(stage: .data, check: "protocol", result: "no-recipients", action: "reject", reply: r, reason: "all RCPT commands were refused")
                return await send(r)
            }
            return await badSequence("Need RCPT command")
        }
        if !shared.log.isHealthy {
            let r = SMTPReply(451, "4.3.0", "Local error: decision log unavailable, try again later")
            logDecision(stage: .data, check: "log", result: "error", action: "tempfail", reply: r, reason: "decision log cannot be written")
            return await send(r)
        }
        if let r = run.atDataCommand(ctx, record: { logVerdict($0, extra: stageContext(.data)) }) {
            endTransaction()
            return await send(r)
        }
        guard await send(SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>")) else { close(.clientClosed); return false }
        idle.setBusy(false)
        defer { idle.setBusy(true) }

        let max = listener.maxMessageOctets
        var reader = DataReader(maxLineLength: 1000)
        let spool = MessageSpool(directory: shared.config.spoolDirectory, memoryLimit: shared.config.spoolMemoryLimit)
        // The header section is gathered field by field (bounded by maxHeaderOctets, dropped
        // fields included); each whole field is judged, spooled and shown to the observers.
        var assembler = HeaderFieldAssembler(maxOctets: Session.maxHeaderOctets)
        var headers: [HeaderField] = []
        var collectingHeaders = true
        var truncated = false
        var dataOutcome: StageDecision?
        var ended = false
        // Streaming checks (DKIM) see every header field and the body as it arrives.
        let observers: [(String, MessageObserver)] = policy.checks.compactMap { pc in
            (pc.check as? StreamingCheck).map { ($0.name, $0.makeObserver()) }
        }
        var separatorSeen = false
        var bodyChunk: [UInt8] = []
        // Incoming Authentication-Results that claim to be ours are removed (RFC 8601 §5).
        var droppedAR = 0

        func take(_ field: [UInt8]) {
            if AuthenticationResults.claims(field, authservIDs: shared.authservIDs) { droppedAR += 1; return }
            if let h = HeaderParser.field(field) { headers.append(HeaderField(h.0, h.1)) }
            if truncated { return }
            for (_, o) in observers { o.header(field) }
            spool.appendLine(ByteBuffer(bytes: field))
        }
        func endHeaders() {
            if let f = assembler.finish() { take(f) }
            if !truncated && !assembler.tooLarge { for (_, o) in observers { o.endOfHeaders() } }
            collectingHeaders = false
        }

        let dataStarted = ContinuousClock.now
        while !ended {
            if ContinuousClock.now - dataStarted > .seconds(listener.dataDeadline) {
                let r = SMTPReply(451, "4.4.2", "DATA took longer than \(listener.dataDeadline)s; message discarded")
                _ = await write(r)
                logDecision(stage: .data, check: "protocol", result: "data-deadline", action: "tempfail", reply: r,
                            reason: "DATA phase over dataDeadline \(listener.dataDeadline)s; message discarded", extra: stageContext(.data))
                close(.timeout)
                return false
            }
            let line: SMTPLine?
            do {
                line = try await inbound.next()
            } catch is IdleTimeout {
                _ = await send(.timeout)
                logDecision(stage: .data, check: "protocol", result: "timeout", action: "tempfail", reply: .timeout,
                            reason: "no data for \(listener.connectionTimeout)s; message discarded", extra: stageContext(.data))
                close(.timeout)
                return false
            } catch {
                close(handle.closedByServer ? .shutdown : .clientClosed, detail: "during DATA; message discarded")
                return false
            }
            guard let line else {
                close(handle.closedByServer ? .shutdown : .clientClosed, detail: "during DATA; message discarded")
                return false
            }
            for event in reader.feed(line) {
                switch event {
                case .end:
                    ended = true
                case .headersComplete:
                    idle.setBusy(true)
                    defer { idle.setBusy(false) }
                    endHeaders()
                    ctx.headers = headers
                    ctx.messageSize = reader.size
                    dataOutcome = await runStage(.data)
                case .content(let buf):
                    if max > 0 && reader.size > max { truncated = true }
                    if collectingHeaders {
                        if let f = assembler.feed(buf.readableBytesView) { take(f) }
                        continue
                    }
                    if truncated { continue }
                    if !observers.isEmpty {
                        if !separatorSeen {
                            separatorSeen = true
                        } else {
                            bodyChunk += buf.readableBytesView
                            bodyChunk += [13, 10]
                            if bodyChunk.count >= 64 * 1024 {
                                for (_, o) in observers { o.body(bodyChunk) }
                                bodyChunk.removeAll(keepingCapacity: true)
                            }
                        }
                    }
                    spool.appendLine(buf)
                }
            }
        }
        idle.setBusy(true)
        if collectingHeaders {
            endHeaders()
            ctx.headers = headers
        }
        if droppedAR > 0 {
            logDecision(stage: .message, check: "headers", result: "removed", action: "continue", reply: nil,
                        reason: "removed \(droppedAR) Authentication-Results field\(droppedAR == 1 ? "" : "s") claiming to be from \(helloName)",
                        extra: stageContext(.message))
        }
        if !observers.isEmpty && !assembler.tooLarge {
            if !bodyChunk.isEmpty { for (_, o) in observers { o.body(bodyChunk) } }
            for (name, o) in observers { ctx.streamed[name] = await o.finish() }
        }
        return await endOfData(spool: spool, reader: reader, truncated: truncated, headerTooLarge: assembler.tooLarge,
                               dataOutcome: dataOutcome)
    }

    /// The most octets of header section a message may have (dropped fields included).
    static let maxHeaderOctets = 256 * 1024
    static let headerTooLarge = SMTPReply(552, "5.3.4", "Message header section exceeds \(maxHeaderOctets / 1024) KB; message refused")

    func endOfData(spool: MessageSpool, reader: DataReader, truncated: Bool, headerTooLarge: Bool,
                   dataOutcome: StageDecision?) async -> Bool {
        var t = txn!
        ctx.messageSize = reader.size
        ctx.messageTruncated = truncated
        let headers = ctx.headers
        let messageID = headers.first { $0.name.lowercased() == "message-id" }?.value ?? ""

        func finish(_ reply: SMTPReply, action: String, downstream: DeliveryOutcome? = nil) async -> Bool {
            var f: [(String, JSONValue)] = [
                ("transaction", .string(t.id)), ("sender", .string(t.sender.description)),
                ("recipients", .array(t.recipients.map { .string($0.description) })), ("size", .int(reader.size)),
                ("message_id", .string(messageID)), ("action", .string(action)), ("reply", .string(reply.summary)),
            ] + policyFields
            if run.score != 0 { f.append(("score", .double(run.score))) }
            if let d = downstream {
                f.append(("downstream", .object([("target", .string(d.target)), ("result", .string(d.kind.rawValue)), ("reply", .string(d.detail))])))
            }
            shared.log.append(record("transaction", f))
            if action == "accept" { errors = 0; junk = 0 }
            let shuttingDown = endTransaction()
            // The answer to the message itself is never replaced by 421; a refusal counts.
            let ok = await write(reply)
            if reply.code >= 500 { errors += 1 }
            if shuttingDown {
                _ = await send(.shuttingDown)
                close(.shutdown)
                return false
            }
            return ok
        }

        if let p = reader.problem {
            logDecision(stage: .message, check: "data", result: p.name, action: "reject", reply: p.reply,
                        reason: "message text is not valid SMTP; nothing forwarded", extra: stageContext(.message))
            return await finish(p.reply, action: "reject")
        }
        if headerTooLarge {
            logDecision(stage: .message, check: "limits", result: "header-too-large", action: "reject", reply: Session.headerTooLarge,
                        reason: "header section over \(Session.maxHeaderOctets) octets; nothing forwarded", extra: stageContext(.message))
            return await finish(Session.headerTooLarge, action: "reject")
        }
        if spool.failed != 0 {
            let r = SMTPReply.localError
            logDecision(stage: .message, check: "spool", result: "error", action: "tempfail", reply: r,
                        reason: "spool write failed: \(String(cString: strerror(spool.failed)))")
            return await finish(r, action: "tempfail")
        }
        if let d = dataOutcome, let r = d.action.reply {
            return await finish(r, action: d.action.name)
        }
        let outcome = await runStage(.message)
        if let r = outcome.action.reply {
            return await finish(r, action: outcome.action.name)
        }
        t = txn!
        if truncated {
            // Never forward a message that was not kept whole, whatever the checks said.
            logDecision(stage: .message, check: "size", result: "oversize", action: "reject", reply: SizeCheck.tooBig,
                        reason: "message exceeds maxmessagesize \(listener.maxMessageOctets)")
            return await finish(SizeCheck.tooBig, action: "reject")
        }
        let prefix = receivedHeader(t) + HeaderField.mergingAuthenticationResults(t.headers, authserv: helloName).map { "\($0.name): \($0.value)\r\n" }.joined()
        let env = Envelope(sender: t.sender, parameters: t.parameters, recipients: t.recipients)
        // The decision is made durable before anything goes downstream: once the downstream
        // has said 250 no log trouble may turn it into a 451 (and a second copy on retry).
        do {
            try await shared.log.appendDurably(record("transaction.commit", [
                ("transaction", .string(t.id)), ("recipients", .int(t.recipients.count)), ("size", .int(reader.size)),
            ]))
        } catch {
            let r = SMTPReply(451, "4.3.0", "Local error: decision log unavailable, try again later")
            logDecision(stage: .message, check: "log", result: "error", action: "tempfail", reply: r,
                        reason: "decision could not be made durable: \(error); nothing forwarded")
            return await finish(r, action: "tempfail")
        }
        let delivery = await shared.forwarder.deliver(env, prefix: prefix, spool: spool)
        let action: String
        switch delivery.kind {
        case .delivered: action = "accept"
        case .rejected: action = "reject"
        case .tempfailed, .unknown, .localError: action = "tempfail"
        }
        return await finish(delivery.reply, action: action, downstream: delivery)
    }

    /// RFC 5321 §4.4 trace field.
    func receivedHeader(_ t: Transaction) -> String {
        let proto: String
        if t.parameters.smtpUTF8 { proto = "UTF8SMTP" } else { proto = esmtp ? "ESMTP" : "SMTP" }
        let literal: String
        if case .v6 = ctx.clientIP { literal = "IPv6:\(clientIPText)" } else { literal = clientIPText }
        // A HELO that is no domain or address literal is the client's text: it goes into the
        // comment, escaped, never into the from-domain.
        let from: String
        if let h = helo, AddressParser.isDomain(Substring(h), allowUTF8: true) || AddressParser.parseAddressLiteral(Substring(h)) != nil {
            from = "\(h) ([\(literal)])"
        } else {
            from = "unknown (\(helo.map { "helo=\(HeaderText.comment($0)) " } ?? "")[\(literal)])"
        }
        var h = "Received: from \(from)\r\n\tby \(helloName) (MailGate) with \(proto) id \(t.id)"
        if t.recipients.count == 1 { h += "\r\n\tfor <\(t.recipients[0])>;" } else { h += ";" }
        return h + " \(Session.rfc5322Date())\r\n"
    }

    static func rfc5322Date() -> String {
        var t = time(nil)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S +0000", &tmv)
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
