import NIOCore
import SMTPProtocol

/// Drives `SMTPServerStateMachine` for the simulator: the client's side is the
/// `SimulationInput`, the transport is in memory, the downstream always takes the message.
struct SimulatedSession {
    let policy: CompiledPolicy
    let input: SimulationInput
    let run: PolicyRun
    var machine: SMTPServerStateMachine
    let client: CheckContext
    var out = SimulationResult()
    /// The step being written: the command or stage the verdicts belong to.
    var step: SimulationResult.Step?
    var message: MessageFacts?
    var replies: [SMTPReply] = []
    var headers: [HeaderField] = []
    /// The data stage's refusal: the verdict is given at data, as the gateway's is decided there.
    var dataRefusal: SMTPReply?
    var transactionScore: Double?

    init(policy: CompiledPolicy, input: SimulationInput) {
        self.policy = policy
        self.input = input
        self.run = PolicyRun(policy: policy, isLocalDomain: { input.isLocal($0) })
        var c = CheckContext(sessionID: "simulation", listener: "smtp", clientIP: input.clientIP, clientPort: 0,
                             clientAuthorized: input.authorizedAddresses.contains { $0.contains(input.clientIP) },
                             maxMessageSize: input.maxMessageSize)
        c.clientPTR = input.clientPTR
        c.authenticatedUser = input.authenticatedUser
        c.tls = input.tls
        self.client = c
        var cfg = SMTPServerConfiguration(helloName: c.receiver)
        cfg.heloRequired = false
        cfg.maxMessageSize = input.maxMessageSize
        cfg.maxErrors = Int.max
        cfg.clientTrusted = c.clientAuthorized || input.authenticatedUser != nil
        cfg.allowUntrustedRouting = input.allowUntrustedRouting
        cfg.clientAddress = input.clientIP.description
        cfg.isLocalDomain = { input.isLocal($0) }
        self.machine = SMTPServerStateMachine(configuration: cfg, sessionID: "simulation")
    }

    mutating func run() async -> SimulationResult {
        begin(.connect, "connect from [\(input.clientIP)]\(input.clientPTR.map { " (\($0))" } ?? "")")
        if let r = await say(nil, .connected), r.code >= 400 { return finish(.connect, r) }
        if let h = input.helo {
            if let r = await say(.helo, "\(input.heloVerb) \(h)"), !r.isPositive { return finish(.helo, r) }
        }
        guard let sender = input.sender else { return finish(input.helo == nil ? .connect : .helo, nil) }
        let size = input.message.map { " SIZE=\($0.count)" } ?? ""
        let extended = input.helo != nil && input.heloVerb.uppercased() != "HELO"
        if let r = await say(.mail, "MAIL FROM:<\(sender)>\(extended ? size : "")"), !r.isPositive { return finish(.mail, r) }
        var firstRefusal: SMTPReply?
        for to in input.recipients {
            if let r = await say(.rcpt, "RCPT TO:<\(to)>"), !r.isPositive, firstRefusal == nil { firstRefusal = r }
        }
        if machine.transaction?.recipients.isEmpty ?? true {
            return finish(.rcpt, firstRefusal ?? SMTPReply(554, "5.5.1", "No valid recipients"))
        }
        if let r = await say(.data, "DATA"), r.code != 354 { return finish(.data, r) }
        return await sendMessage()
    }

    /// Sends a command line (or the event) and returns the last reply it drew.
    mutating func say(_ stage: Stage?, _ line: String) async -> SMTPReply? {
        begin(stage ?? .connect, line)
        let buf = ByteBuffer(string: line)
        return await say(stage, .command(SMTPLine(bytes: buf, ending: .crlf, wireLength: buf.readableBytes + 2, overflow: false)))
    }

    mutating func say(_ stage: Stage?, _ event: SMTPServerEvent) async -> SMTPReply? {
        replies = []
        await feed(event)
        endStep(reply: replies.last.flatMap { $0.isPositive || $0.code == 354 ? nil : $0 })
        return replies.last
    }

    mutating func sendMessage() async -> SimulationResult {
        let raw = input.message ?? Array("\r\n".utf8)
        var lines = raw.split(separator: 0x0A, omittingEmptySubsequences: false).map { l -> [UInt8] in
            var a = Array(l)
            if a.last == 0x0D { a.removeLast() }
            return a
        }
        if lines.last?.isEmpty == true { lines.removeLast() }
        let intake = MessageIntake(checks: policy.checks, authservIDs: [AuthenticationResults.normalised(client.receiver)],
                                   maxMessageSize: input.maxMessageSize)
        var size = 0
        var headersDone = false
        replies = []
        for l in lines {
            size += l.count + 2
            if l.isEmpty && !headersDone {
                headersDone = true
                await headersComplete(intake, size: size)
            }
            intake.line(ByteBuffer(bytes: l), size: size)
        }
        if !headersDone { await headersComplete(intake, size: size) }
        let streamed = await intake.finish()
        var facts = MessageFacts()
        facts.headers = intake.headers
        facts.size = size
        facts.truncated = intake.truncated
        if !intake.headerTooLarge { facts.streamed = streamed }
        message = facts
        begin(.message, "end of data (\(size) octets)")
        var s = SMTPDataSummary()
        s.size = size
        s.headerTooLarge = intake.headerTooLarge
        s.truncated = intake.truncated
        replies = []
        await feed(.dataEnded(s))
        let r = replies.last.flatMap { $0.isPositive ? nil : $0 }
        if let d = dataRefusal {
            // Refused at the data stage: answered at the end of data, decided at data.
            step = nil
            return finish(.data, d)
        }
        endStep(reply: r)
        return finish(.message, r)
    }

    mutating func headersComplete(_ intake: MessageIntake, size: Int) async {
        intake.endHeaders()
        var facts = MessageFacts()
        facts.headers = intake.headers
        facts.size = size
        message = facts
        begin(.data, "headers (\(intake.headers.count) fields)")
        await feed(.headersComplete)
        endStep(reply: dataRefusal)
    }
}

extension SimulatedSession {
    /// Feeds an event and performs the actions, and those of the answers, in order.
    mutating func feed(_ event: SMTPServerEvent) async {
        var queue = machine.handle(event)
        while !queue.isEmpty {
            let action = queue.removeFirst()
            if let answer = await perform(action) { queue += machine.handle(answer) }
        }
    }

    mutating func perform(_ action: SMTPServerAction) async -> SMTPServerEvent? {
        switch action {
        case .send(let r):
            replies.append(r)
        case .runStage(let stage):
            var vs: [PolicyVerdict] = []
            let d = await run.run(stage, context: context()) { vs.append($0) }
            step?.verdicts += vs
            if stage == .data, let r = d.action.reply { dataRefusal = r }
            return .stageDone(stage, SMTPStageOutcome(d))
        case .openTransaction:
            run.beginTransaction()
            return .transactionOpened(true)
        case .endTransaction:
            run.endTransaction()
        case .verifyRecipient:
            return .recipientVerified(target: "", reply: nil)
        case .admitData:
            var vs: [PolicyVerdict] = []
            let r = run.atDataCommand(context()) { vs.append($0) }
            step?.verdicts += vs
            return .dataAdmitted(r, endsTransaction: r != nil)
        case .commit:
            return .committed(error: nil)
        case .deliver:
            return .delivered(SMTPDeliveryReport(action: "accept", reply: SMTPReply(250, "2.0.0", "Message accepted (simulated)")))
        case .log(let d):
            step?.verdicts.append(PolicyVerdict(stage: d.stage, check: d.check, result: d.result, action: d.action, reply: d.reply, reason: d.reason))
        case .logTransaction(let t, _, _):
            // Taken before the transaction ends and its score with it.
            headers = t.headers
            transactionScore = run.score
        case .receiveData, .receiveChunk, .discardChunk, .close, .authFailed:
            // The simulator sends its message with DATA, never in BDAT chunks, and never AUTH
            // (an authenticated user is given as a fact).
            break
        case .checkCredentials:
            return .credentialsChecked(.unavailable("the simulator does not authenticate"))
        }
        return nil
    }

    /// The check context: the client's facts, the machine's state, the message's facts.
    func context() -> CheckContext { client.at(machine, message: message, score: run.score) }

    mutating func begin(_ stage: Stage, _ label: String) {
        step = SimulationResult.Step(stage: stage, label: label, verdicts: [], reply: nil)
    }

    /// Closes the step; a DATA command that drew no verdict and no refusal is not shown.
    mutating func endStep(reply: SMTPReply?) {
        guard var s = step else { return }
        step = nil
        s.reply = reply
        if s.label == "DATA" && s.verdicts.isEmpty && reply == nil { return }
        out.steps.append(s)
    }

    mutating func finish(_ stage: Stage, _ reply: SMTPReply?) -> SimulationResult {
        let hs = machine.transaction?.headers ?? headers
        out.headers = HeaderField.mergingAuthenticationResults(hs, authserv: client.receiver)
        if let r = reply {
            out.action = r.isTransient ? "tempfail" : "reject"
        } else {
            out.action = "accept"
        }
        out.reply = reply
        out.stage = stage
        out.score = transactionScore ?? run.score
        return out
    }
}
