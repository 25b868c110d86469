extension SMTPServerStateMachine {
    /// Verbs that mean another protocol was sent to us: 421 and close at once.
    static let foreignVerbs: Set<String> = ["GET", "POST", "HEAD", "PUT", "CONNECT", "USER"]

    mutating func command(_ line: SMTPLine) -> [SMTPServerAction] {
        // The framer read this line as BDAT and its chunk follows: it must be answered here.
        if sasl != nil {
            // The answer to a 334; a BDAT line here still has its octets read first.
            if let c = line.chunk { sasl = nil; return bdat(c) }
            return saslLine(line)
        }
        if let c = line.chunk { return bdat(c) }
        failedChunks = nil
        if SMTPInboundFramer.isBDATCommand(line) {
            // A BDAT the framer could not read (bad size, too long): how many octets follow
            // is unknown, so nothing after it can be read as commands safely.
            let r = SMTPReply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]; closing")
            return [.log(decision(currentStage, "protocol", "syntax", "reject", r, "BDAT without a valid chunk-size; stream out of step")),
                    .send(r), close(.protocolViolation)]
        }
        if line.overflow || line.wireLength > 512 {
            return refuse(currentStage, "protocol", "line-too-long", .lineTooLong,
                          "command line of \(line.wireLength)\(line.overflow ? "+" : "") octets exceeds 512")
        }
        let text = String(decoding: line.bytes.readableBytesView, as: UTF8.self)
        var options = configuration.parserOptions
        options.dsn = configuration.offersDSN
        options.requireTLS = offersREQUIRETLS
        switch CommandParser.parse(text, options: options, transactionUTF8: transaction?.parameters.smtpUTF8 ?? false) {
        case .failure(.unrecognized(let verb)):
            if Self.foreignVerbs.contains(verb) {
                let r = SMTPReply(421, "4.7.0", "This is an SMTP server; closing connection")
                return [.log(decision(currentStage, "protocol", "forbidden-command", "tempfail", r,
                                      "\(verb) command: HTTP or other protocol sent to SMTP")),
                        .send(r), close(.forbiddenCommand)]
            }
            return refuse(currentStage, "protocol", "unrecognized", CommandError.unrecognized(verb).reply, "unrecognized command \(verb)")
        case .failure(.syntax(let r)):
            return refuse(currentStage, "protocol", "syntax", r, "bad syntax: \(String(text.prefix(100)))")
        case .success(.starttls) where !SMTPInboundFramer.hasVerb(line, "STARTTLS"):
            // Upper-cased to STARTTLS only by Unicode rules: the framer did not hold for it.
            return refuse(currentStage, "protocol", "unrecognized", CommandError.unrecognized("STARTTLS").reply, "STARTTLS spelt outside ASCII")
        case .success(let c):
            if let tooMuch = countJunk(c) { return tooMuch }
            return dispatch(c)
        }
    }

    /// HELO, EHLO, LHLO, NOOP, RSET, VRFY and HELP: past maxJunkCommands without a message
    /// each also counts as an error.
    mutating func countJunk(_ c: SMTPCommand) -> [SMTPServerAction]? {
        switch c {
        case .helo, .ehlo, .lhlo, .noop, .rset, .vrfy, .help: break
        default: return nil
        }
        junk += 1
        guard junk > configuration.maxJunkCommands else { return nil }
        errors += 1
        guard errors > configuration.maxErrors else { return nil }
        return [.log(decision(currentStage, "protocol", "junk-commands", "tempfail", .tooManyErrors,
                              "more than \(configuration.maxJunkCommands) \(c.verb)/NOOP/RSET/VRFY/HELP/HELO commands without a message"))]
            + closeForErrors()
    }

    mutating func dispatch(_ c: SMTPCommand) -> [SMTPServerAction] {
        switch c {
        case .helo(let name): return greet(name, verb: "HELO")
        case .ehlo(let name): return greet(name, verb: "EHLO")
        case .lhlo(let name): return greet(name, verb: "LHLO")
        case .mail(let from, let params): return mail(from, params)
        case .rcpt(let to, let params): return rcpt(to, params)
        case .data: return data()
        case .rset:
            let end: [SMTPServerAction] = transaction == nil ? [] : [endTransaction()]
            return end + reply(SMTPReply(250, "2.0.0", "Reset OK"))
        case .noop: return reply(.ok)
        case .quit: return [.send(SMTPReply(221, "2.0.0", "\(configuration.helloName) closing connection")), close(.quit)]
        case .vrfy: return reply(SMTPReply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"))
        case .expn: return reply(SMTPReply(502, "5.5.1", "EXPN not available"))
        case .help:
            let greet = configuration.dialect == .lmtp ? "LHLO" : "HELO EHLO"
            return reply(SMTPReply(214, "2.0.0", "Commands: \(greet) MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"))
        case .bdat:
            // Answered in `command` before parsing.
            return [.send(SMTPReply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]; closing")), close(.protocolViolation)]
        case .starttls: return startTLS()
        case .auth(let argument): return auth(argument)
        }
    }

    /// A command out of order: 503 5.5.1 with `text`, logged with the same words.
    mutating func badSequence(_ text: String) -> [SMTPServerAction] {
        refuse(currentStage, "protocol", "bad-sequence", .badSequence(text), text)
    }

    // MARK: HELO / EHLO / LHLO

    mutating func greet(_ name: String, verb: String) -> [SMTPServerAction] {
        let lmtp = configuration.dialect == .lmtp
        if lmtp != (verb == "LHLO") {
            let r = lmtp ? SMTPReply(500, "5.5.1", "This is an LMTP server: use LHLO")
                         : CommandError.unrecognized(verb).reply
            return refuse(currentStage, "protocol", lmtp ? "wrong-dialect" : "unrecognized", r,
                          lmtp ? "\(verb) sent to an LMTP listener" : "unrecognized command \(verb)")
        }
        let end: [SMTPServerAction] = transaction == nil ? [] : [endTransaction()]
        heloVerb = verb
        heloCandidate = name
        return awaiting(.helo(name: name, verb: verb), end + [.runStage(.helo)])
    }

    mutating func heloDone(name: String, verb: String, _ o: SMTPStageOutcome) -> [SMTPServerAction] {
        if let r = o.reply {
            helo = nil
            heloCandidate = nil
            return ready(reply(r))
        }
        helo = name
        extended = verb != "HELO"
        let first = "\(configuration.helloName) Hello \(name) [\(configuration.clientAddress)]"
        guard extended else { return ready(reply(SMTPReply(code: 250, enhanced: nil, lines: [first]))) }
        return ready(reply(SMTPReply(code: 250, enhanced: nil, lines: [first] + extensions)))
    }

    /// What EHLO and LHLO advertise: only what the session can honour end to end.
    public var extensions: [String] {
        let size = configuration.maxMessageSize > 0 ? "SIZE \(configuration.maxMessageSize)" : "SIZE"
        let starttls = configuration.offersSTARTTLS && tls == nil ? ["STARTTLS"] : []
        return ["PIPELINING", size, "8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES", "SMTPUTF8"] + (configuration.offersDSN ? ["DSN"] : [])
            + starttls + (offersREQUIRETLS ? ["REQUIRETLS"] : []) + (announcesAuth ? ["AUTH PLAIN LOGIN"] : []) + ["HELP"]
    }

    /// RFC 8689 §4.1: REQUIRETLS is offered (and its parameter taken) only once the session
    /// itself is encrypted, and only where the gateway can keep the promise downstream.
    var offersREQUIRETLS: Bool { configuration.offersREQUIRETLS && tls != nil }

    // MARK: MAIL

    mutating func mail(_ from: ReversePath, _ params: MailParameters) -> [SMTPServerAction] {
        if configuration.heloRequired && helo == nil {
            return badSequence("Send \(configuration.dialect == .lmtp ? "LHLO" : "HELO/EHLO") first")
        }
        if transaction != nil { return badSequence("Nested MAIL command") }
        if configuration.verifyIdentity, let user = authUser, let m = from.mailbox, !user.owns(m, isLocalDomain: configuration.isLocalDomain) {
            return refuse(.mail, "auth", "identity-mismatch", SMTPReply(550, "5.7.1", "Sender <\(m)> is not owned by user \(user.name)"),
                          "verifyIdentity: \(user.name) may not send as <\(m)>")
        }
        if configuration.tlsRequired && tls == nil {
            return refuse(.mail, "tls", "required", SMTPReply(530, "5.7.0", "Must issue a STARTTLS command first"),
                          "tlsRequired: MAIL without TLS")
        }
        if !extended && params.needsESMTP {
            return refuse(.mail, "protocol", "syntax", SMTPReply(555, "5.5.4", "MAIL parameters require EHLO"), "ESMTP parameters after HELO")
        }
        return awaiting(.open(from, params), [.openTransaction])
    }

    mutating func transactionOpened(_ allowed: Bool) -> [SMTPServerAction] {
        guard case .open(let from, let params) = pending else { return [] }
        guard allowed else { return [.send(.shuttingDown), close(.shutdown)] }
        transactions += 1
        transaction = SMTPTransaction(id: "\(sessionID).\(transactions)", sender: from, parameters: params)
        return awaiting(.mail, [.runStage(.mail)])
    }

    mutating func mailDone(_ o: SMTPStageOutcome) -> [SMTPServerAction] {
        guard let t = transaction else { return ready([]) }
        if let r = o.reply { return ready([endTransaction()] + reply(r)) }
        transaction?.headers += o.headers
        return ready(reply(SMTPReply(250, "2.1.0", "Sender <\(t.sender)> OK")))
    }

    // MARK: RCPT

    mutating func rcpt(_ given: Mailbox, _ params: RecipientParameters = RecipientParameters()) -> [SMTPServerAction] {
        guard transaction != nil else { return badSequence("Need MAIL before RCPT") }
        // `user@local.` is the same mailbox as `user@local`; it is forwarded without the dot.
        let to = given.withoutTrailingDot
        if !extended && !params.isEmpty {
            return refuse(.rcpt, "protocol", "syntax", SMTPReply(555, "5.5.4", "RCPT parameters require EHLO"), "ESMTP parameters after HELO")
        }
        transaction?.rcptAttempted = true
        candidateHeaders = []
        transaction?.candidate = to
        transaction?.candidateParameters = params
        let count = transaction?.recipients.count ?? 0
        if count >= configuration.maxRecipients {
            return refuseRecipient("limits", "too-many-recipients", SMTPReply(452, "4.5.3", "Too many recipients"),
                                   "more than maxRecipients \(configuration.maxRecipients)")
        }
        let local = to.domain.isEmpty || configuration.isLocalDomain(to.domain)
        if let refusal = RelayControl.check(to, isLocal: local, clientTrusted: configuration.clientTrusted || authUser != nil, client: configuration.clientAddress,
                                            allowUntrustedRouting: configuration.allowUntrustedRouting) {
            return refuseRecipient("relay", refusal.result, refusal.reply, refusal.reason)
        }
        var out: [SMTPServerAction] = []
        if !local {
            let why = authUser.map { "client authenticated as \($0.name)" } ?? "client \(configuration.clientAddress) matches authorizedAddresses"
            out.append(.log(decision(.rcpt, "relay", authUser == nil ? "authorized" : "authenticated", "continue", nil, why)))
        }
        return awaiting(.rcpt, out + [.runStage(.rcpt)])
    }

    mutating func refuseRecipient(_ check: String, _ result: String, _ r: SMTPReply, _ reason: String) -> [SMTPServerAction] {
        let out = refuse(.rcpt, check, result, r, reason)
        transaction?.candidate = nil
        return ready(out)
    }

    mutating func rcptDone(_ o: SMTPStageOutcome) -> [SMTPServerAction] {
        guard let to = transaction?.candidate else { return ready([]) }
        if let r = o.reply {
            transaction?.candidate = nil
            return ready(reply(r))
        }
        candidateHeaders = o.headers
        if configuration.verifyRecipients && !to.domain.isEmpty { return awaiting(.verification, [.verifyRecipient(to)]) }
        return acceptRecipient()
    }

    mutating func recipientVerified(target: String, reply r: SMTPReply?) -> [SMTPServerAction] {
        guard pending == .verification else { return [] }
        if let r, !r.isPositive {
            return refuseRecipient("downstream", "refused", r, "\(target) refused the recipient at verification")
        }
        return acceptRecipient()
    }

    mutating func acceptRecipient() -> [SMTPServerAction] {
        guard let to = transaction?.candidate else { return ready([]) }
        transaction?.recipients.append(to)
        transaction?.headers += candidateHeaders
        candidateHeaders = []
        let params = transaction?.candidateParameters ?? RecipientParameters()
        transaction?.recipientParameters.append(params)
        transaction?.candidate = nil
        return ready(reply(SMTPReply(250, "2.1.5", "Recipient <\(to)> OK")))
    }

    // MARK: Stage results

    mutating func stageDone(_ stage: Stage, _ o: SMTPStageOutcome) -> [SMTPServerAction] {
        switch (pending, stage) {
        case (.connect, .connect): return connectDone(o)
        case (.helo(let name, let verb), .helo): return heloDone(name: name, verb: verb, o)
        case (.mail, .mail): return mailDone(o)
        case (.rcpt, .rcpt): return rcptDone(o)
        case (.dataStage, .data):
            pending = .none
            dataStageRan = true
            dataOutcome = o.reply == nil ? nil : o
            transaction?.headers += o.headers
            return []
        case (.dataStageAtEnd, .data):
            dataStageRan = true
            dataOutcome = o.reply == nil ? nil : o
            transaction?.headers += o.headers
            return afterDataStage(dataSummary)
        case (.messageStage, .message): return messageDone(o)
        default: return []
        }
    }

    mutating func connectDone(_ o: SMTPStageOutcome) -> [SMTPServerAction] {
        if let r = o.reply {
            // A refusal at connect is final: 554 (or 421 when temporary), then close.
            let said = r.isTransient ? SMTPReply(code: 421, enhanced: r.enhanced, lines: r.lines) : r
            return [.send(said), close(.connectRejected, detail: r.summary)]
        }
        return ready([.send(configuration.greetingReply)])
    }
}
