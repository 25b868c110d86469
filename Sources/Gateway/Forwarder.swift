import Foundation
import NIOCore
import NIOPosix
import SMTPProtocol

/// The envelope of one transaction.
public struct Envelope: Sendable {
    public var sender: ReversePath
    public var parameters: MailParameters
    public var recipients: [Mailbox]
    /// Each recipient's DSN parameters (RFC 3461), in order; passed on when the target offers DSN.
    public var recipientParameters: [RecipientParameters] = []
}

/// What happened downstream, and what the client is told.
public struct DeliveryOutcome: Sendable {
    /// `unknown`: the final dot went out and no answer came back (RFC 1047). The message may
    /// have been delivered; it is never sent again by the gateway, and the client hears 451.
    /// `localError`: the gateway could not read its own copy; nothing was delivered.
    public enum Kind: String, Sendable {
        case delivered, rejected, tempfailed, unknown, localError = "local-error"
        /// An LMTP downstream took some recipients and not others (`perRecipient` says which).
        case partial
        /// The transaction record's action.
        public var action: String {
            switch self {
            case .delivered: return "accept"
            case .rejected: return "reject"
            case .tempfailed, .unknown, .localError: return "tempfail"
            case .partial: return "partial"
            }
        }
    }
    public var kind: Kind
    /// The reply for the client.
    public var reply: SMTPReply
    /// The target that gave the final answer (or the last one tried).
    public var target: String
    /// The downstream's own reply, as text, for the log; or the local error.
    public var detail: String
    /// An LMTP downstream's reply for each recipient, in order.
    public var perRecipient: [SMTPReply]? = nil
    /// How the connection that carried (or refused) the message was protected:
    /// `plaintext`, `tls` or `tls-verified`; nil for a maildir or no connection.
    public var downstreamTLS: String? = nil
}

/// Forwards accepted messages to the downstream targets in order. A target that fails
/// (connect, timeout, drop, 421) is marked dead for `retryPeriod` and the next is tried;
/// when all are dead the one that died first is tried anyway. SMTP connections are pooled.
public final class Forwarder: @unchecked Sendable {
    let config: DownstreamConfig
    let targets: [(String, DownstreamTarget)]
    let helloName: String
    let group: EventLoopGroup
    private let lock = NSLock()
    private var idle: [String: [DownstreamConnection]] = [:]
    private var deadUntil: [String: ContinuousClock.Instant] = [:]
    /// What each relay target said in its EHLO/LHLO reply, last time we connected.
    private var capabilities: [String: Set<String>] = [:]
    private var closed = false

    /// Some target speaks LMTP (one reply per recipient after the dot).
    let hasLMTPTarget: Bool
    /// STARTTLS toward the targets, when configured.
    let tls: DownstreamTLS?

    public init(config: DownstreamConfig, helloName: String, group: EventLoopGroup) throws {
        self.config = config
        self.tls = try DownstreamTLS(config.tls)
        self.targets = config.targets.compactMap { s in DownstreamTarget(s).map { (s, $0) } }
        self.hasLMTPTarget = targets.contains { if case .lmtp = $0.1 { return true } else { return false } }
        self.helloName = helloName
        self.group = group
    }

    /// Order of targets to try: live ones in configured order; if none is live, the one
    /// whose dead period ends first.
    func candidates() -> [(String, DownstreamTarget)] {
        lock.lock(); defer { lock.unlock() }
        let now = ContinuousClock.now
        let live = targets.filter { (deadUntil[$0.0] ?? now) <= now }
        if !live.isEmpty { return live }
        return [targets.min { (deadUntil[$0.0] ?? now) < (deadUntil[$1.0] ?? now) }!]
    }

    func markDead(_ t: String) {
        lock.lock(); defer { lock.unlock() }
        deadUntil[t] = ContinuousClock.now + .seconds(config.retryPeriod)
    }

    func markAlive(_ t: String) {
        lock.lock(); defer { lock.unlock() }
        deadUntil[t] = nil
    }

    public func isDead(_ t: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return (deadUntil[t] ?? .now) > .now
    }

    public func deliver(_ env: Envelope, prefix: String, spool: MessageSpool) async -> DeliveryOutcome {
        var lastError = "no downstream target"
        var lastTarget = ""
        for (name, target) in candidates() {
            lastTarget = name
            switch target {
            case .maildir(let path):
                do {
                    // As a local delivery agent would, record the envelope sender.
                    let file = try await MaildirDeliverer(path: path).deliver(prefix: "Return-Path: <\(env.sender)>\r\n" + prefix, spool: spool)
                    markAlive(name)
                    return DeliveryOutcome(kind: .delivered, reply: SMTPReply(250, "2.0.0", "Ok: delivered as \(file)"),
                                           target: name, detail: "maildir \(file)")
                } catch let e as SpoolReadError {
                    return Forwarder.spoolUnreadable(e, target: name)
                } catch {
                    lastError = "maildir: \(error)"
                    markDead(name)
                }
            case .smtp, .lmtp:
                guard let relay = target.relay else { continue }
                do {
                    let outcome = try await withConnection(name, relay.endpoint, lmtp: relay.lmtp) { conn in
                        var o = try await transaction(env, prefix: prefix, spool: spool, conn: conn)
                        o.downstreamTLS = conn.tlsState
                        return o
                    }
                    // Once the dot is out the outcome is final, whatever it is: no other target
                    // is tried, so no message is sent twice.
                    if outcome.kind == .unknown { markDead(name) } else if outcome.kind != .localError { markAlive(name) }
                    return outcome
                } catch let e as SpoolReadError {
                    return Forwarder.spoolUnreadable(e, target: name)
                } catch {
                    lastError = "\(error)"
                    markDead(name)
                }
            }
        }
        return DeliveryOutcome(kind: .tempfailed, reply: .downstreamUnavailable, target: lastTarget, detail: lastError)
    }

    private func checkout(_ name: String, _ endpoint: DownstreamTarget.Endpoint, lmtp: Bool) async throws -> (DownstreamConnection, Bool) {
        if let c = popIdle(name) { return (c, true) }
        let c = try await DownstreamConnection.connect(target: name, endpoint: endpoint, lmtp: lmtp, helloName: helloName, group: group,
                                                       connectTimeout: config.connectTimeout, commandTimeout: config.commandTimeout, tls: tls)
        lock.withLock { capabilities[name] = c.capabilities }
        return (c, false)
    }

    /// True when every target is a relay whose last EHLO/LHLO offered `keyword`: only then
    /// may the gateway advertise it (it cannot honour it end to end otherwise). Learnt from
    /// the connections deliveries and verifications make (no extra connection): unknown,
    /// and so not offered, until the first.
    public func allTargetsOffer(_ keyword: String) -> Bool {
        guard !targets.isEmpty, targets.allSatisfy({ $0.1.relay != nil }) else { return false }
        return lock.withLock { targets.allSatisfy { capabilities[$0.0]?.contains(keyword) == true } }
    }

    /// RFC 8689 §4.2.1: a REQUIRETLS message may only go on over TLS with a verified
    /// certificate, to a relay that offers REQUIRETLS itself (an LMTP target and a maildir
    /// are final delivery and need not). True when every target can take one that way
    /// (relay capabilities as learnt by `allTargetsOffer`).
    public var honoursREQUIRETLS: Bool {
        let verifiedTLS = tls.map { $0.config.mode == .required && $0.config.verifies } ?? false
        return !targets.isEmpty && lock.withLock {
            targets.allSatisfy { name, target in
                switch target {
                case .maildir: return true
                case .lmtp: return verifiedTLS
                case .smtp: return verifiedTLS && capabilities[name]?.contains("REQUIRETLS") == true
                }
            }
        }
    }

    private func popIdle(_ name: String) -> DownstreamConnection? {
        lock.lock(); defer { lock.unlock() }
        while var list = idle[name], let c = list.popLast() {
            idle[name] = list
            if c.isActive { return c }
        }
        return nil
    }

    private func checkin(_ c: DownstreamConnection, countsAsMessage: Bool = true) {
        if countsAsMessage { c.messages += 1 }
        lock.lock()
        let keep = !closed && c.isActive && c.messages < config.maxMessagesPerConnection && (idle[c.target]?.count ?? 0) < config.poolSize
        if keep { idle[c.target, default: []].append(c) }
        lock.unlock()
        if !keep { c.quit() }
    }

    /// Closes pooled connections.
    public func shutdown() {
        lock.lock()
        closed = true
        let all = idle.values.flatMap { $0 }
        idle = [:]
        lock.unlock()
        all.forEach { $0.quit() }
    }

    /// What the downstream says about one recipient, asked as `MAIL FROM` / `RCPT TO` /
    /// `RSET` on a pooled connection to the first live SMTP target. Nil when it cannot be
    /// asked (no SMTP target, connection trouble): the recipient is then taken and the end
    /// of data decides, as without verification.
    public func verifyRecipient(sender: ReversePath, parameters: MailParameters, recipient: Mailbox) async -> (target: String, reply: SMTPReply)? {
        guard let (name, target) = candidates().first, let relay = target.relay else { return nil }
        return try? await withConnection(name, relay.endpoint, lmtp: relay.lmtp) { conn in
            var mail = "MAIL FROM:<\(sender)>"
            if parameters.smtpUTF8 && conn.capabilities.contains("SMTPUTF8") { mail += " SMTPUTF8" }
            let replies = try await conn.exchange([mail, "RCPT TO:<\(recipient)>", "RSET"], timeout: config.commandTimeout,
                                                  what: "recipient verification")
            if replies[2].code == 250 { checkin(conn, countsAsMessage: false) } else { conn.close() }
            // Only the recipient's own answer counts; a refused MAIL says nothing about it.
            guard replies[0].code / 100 == 2 else { return nil }
            return (name, passThrough(replies[1]))
        }
    }

    /// Runs `body` on a pooled (or new) connection to the target. Any error closes the
    /// connection; a pooled connection the server had closed while idle is retried once,
    /// fresh. `body` checks the connection back in (or closes it) when it succeeds.
    private func withConnection<T>(_ name: String, _ endpoint: DownstreamTarget.Endpoint, lmtp: Bool,
                                   _ body: (DownstreamConnection) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let (conn, reused) = try await checkout(name, endpoint, lmtp: lmtp)
            do {
                return try await body(conn)
            } catch {
                conn.close()
                if reused, attempt == 1, case DownstreamError.closed = error { continue }
                throw error
            }
        }
    }

    private func transaction(_ env: Envelope, prefix: String, spool: MessageSpool, conn: DownstreamConnection) async throws -> DeliveryOutcome {
        let t = config.commandTimeout
        var mail = "MAIL FROM:<\(env.sender)>"
        let size = prefix.utf8.count + spool.size
        if conn.capabilities.contains("SIZE") { mail += " SIZE=\(size)" }
        if let body = env.parameters.body, conn.capabilities.contains("8BITMIME") { mail += " BODY=\(body)" }
        let dsn = conn.capabilities.contains("DSN")
        let dsnDropped = !dsn && (env.parameters.ret != nil || env.parameters.envid != nil || env.recipientParameters.contains { !$0.isEmpty })
        if dsn {
            mail += (env.parameters.ret.map { " RET=\($0)" } ?? "") + (env.parameters.envid.map { " ENVID=\($0)" } ?? "")
        }
        if env.parameters.smtpUTF8 {
            guard conn.capabilities.contains("SMTPUTF8") else {
                checkin(conn)
                return DeliveryOutcome(kind: .tempfailed, reply: SMTPReply(451, "4.6.7", "Downstream does not support SMTPUTF8, try again later"),
                                       target: conn.target, detail: "downstream lacks SMTPUTF8")
            }
            mail += " SMTPUTF8"
        }
        if env.parameters.requireTLS {
            if let refusal = Self.requireTLSRefusal(conn) {
                checkin(conn)
                return refusal
            }
            if conn.capabilities.contains("REQUIRETLS") { mail += " REQUIRETLS" }
        }
        let commands = [mail] + env.recipients.indices.map { i in
            "RCPT TO:<\(env.recipients[i])>" + (dsn && i < env.recipientParameters.count ? env.recipientParameters[i].wire : "")
        } + ["DATA"]
        // Sent one by one, a refused MAIL or any refused recipient stops before DATA.
        let replies = try await conn.exchange(commands, timeout: t, what: "MAIL/RCPT/DATA replies") { i, sofar in
            if i == 0 { return sofar[0].code == 250 }
            return i != commands.count - 2 || !sofar.dropFirst().contains { $0.code / 100 != 2 }
        }
        let mailReply = replies[0]
        let rcptReplies = Array(replies.dropFirst().prefix(env.recipients.count))
        let dataReply = replies.count == commands.count ? replies.last : nil

        func abort(_ outcome: DeliveryOutcome) async -> DeliveryOutcome {
            // If DATA was accepted we cannot take it back without sending a message: drop
            // the connection, which makes the downstream discard the transaction.
            // Otherwise reset it and keep it for the next message.
            if dataReply?.code == 354 {
                conn.close()
            } else if let r = try? await conn.command("RSET\r\n", timeout: t), r.code == 250 {
                checkin(conn)
            } else {
                conn.close()
            }
            return outcome
        }

        if mailReply.code == 421 { throw DownstreamError.badGreeting(mailReply) }
        if mailReply.code / 100 != 2 {
            return await abort(DeliveryOutcome(kind: mailReply.isTransient ? .tempfailed : .rejected, reply: passThrough(mailReply),
                                         target: conn.target, detail: "MAIL: \(mailReply.summary)"))
        }
        let failed = rcptReplies.filter { $0.code / 100 != 2 }
        if !failed.isEmpty {
            if failed.count == env.recipients.count, failed.allSatisfy(\.isPermanent) {
                return await abort(DeliveryOutcome(kind: .rejected, reply: passThrough(failed[0]), target: conn.target,
                                             detail: "RCPT: \(failed[0].summary)"))
            }
            // Some or all recipients refused temporarily, or refused in part: the client
            // gets a 4xx for the whole message and retries; nothing is delivered twice and
            // nothing is lost.
            return await abort(DeliveryOutcome(kind: .tempfailed,
                                         reply: SMTPReply(451, "4.3.0", "Downstream refused \(failed.count) of \(env.recipients.count) recipients (\(failed[0].summary)); try again later"),
                                         target: conn.target, detail: "RCPT: \(failed.map(\.summary).joined(separator: "; "))"))
        }
        guard let dr = dataReply else { throw DownstreamError.protocolError("no reply to DATA") }
        if dr.code == 421 { throw DownstreamError.badGreeting(dr) }
        guard dr.code == 354 else {
            return await abort(DeliveryOutcome(kind: dr.isTransient ? .tempfailed : .rejected, reply: passThrough(dr),
                                         target: conn.target, detail: "DATA: \(dr.summary)"))
        }
        // Stream: our header fields, then the spooled content dot-stuffed, then the end.
        var stuffer = DotStuffer()
        var out = ByteBufferAllocator().buffer(capacity: 70 * 1024)
        stuffer.stuff(ByteBuffer(string: prefix), into: &out)
        do {
            try await spool.forEachChunk { chunk in
                stuffer.stuff(chunk, into: &out)
                if out.readableBytes >= 64 * 1024 {
                    try await conn.write(out)
                    out.clear()
                }
            }
        } catch let e as SpoolReadError {
            // The dot has not gone out: closing the connection makes the downstream drop it.
            conn.close()
            throw e
        }
        out.writeString(stuffer.terminator())
        var outcome = await finalReply(to: out, conn: conn, recipients: env.recipients.count)
        if dsnDropped { outcome.detail += " (DSN parameters not passed on: \(conn.target) no longer offers DSN)" }
        return outcome
    }

    /// Sends the last chunk with the final dot and reads the answer: one reply, or from an
    /// LMTP downstream one per recipient, in order. From here on nothing is retried: a drop,
    /// a timeout or a 421 leaves the outcome unknown (RFC 1047), the client hears 451 and
    /// the gateway never sends this message again.
    private func finalReply(to out: ByteBuffer, conn: DownstreamConnection, recipients: Int) async -> DeliveryOutcome {
        let replies: [SMTPReply]
        do {
            replies = try await conn.expectReplies(conn.lmtp ? recipients : 1, write: out, timeout: config.dataTimeout, what: "end of data")
            guard !replies.isEmpty else { throw DownstreamError.protocolError("no reply after end of data") }
        } catch {
            conn.close()
            return DeliveryOutcome(kind: .unknown, reply: Forwarder.unknownAfterDot, target: conn.target,
                                   detail: "after end of data: \(error); delivery status unknown, not resent")
        }
        let detail = replies.map(\.summary).joined(separator: "; ")
        if replies.contains(where: { $0.code == 421 }) { conn.close() } else { checkin(conn) }
        if conn.lmtp { return Self.lmtpOutcome(replies.map(passThrough), target: conn.target, detail: detail) }
        let final = replies[0]
        if final.code == 421 {
            return DeliveryOutcome(kind: .unknown, reply: Forwarder.unknownAfterDot, target: conn.target,
                                   detail: "end of data: \(final.summary); not resent")
        }
        if final.code / 100 == 2 {
            return DeliveryOutcome(kind: .delivered, reply: passThrough(final), target: conn.target, detail: final.summary)
        }
        return DeliveryOutcome(kind: final.isTransient ? .tempfailed : .rejected, reply: passThrough(final),
                               target: conn.target, detail: "end of data: \(final.summary)")
    }

    /// An LMTP downstream's replies, one per recipient: an LMTP client hears each one
    /// (`perRecipient`); `reply` sums them up for the log and for an SMTP client, which only
    /// ever sends an LMTP target one recipient (see `maxRecipients`), so never meets
    /// `partial`. Should it still, it hears 451: a second copy for some, no loss for any.
    static func lmtpOutcome(_ replies: [SMTPReply], target: String, detail: String) -> DeliveryOutcome {
        let ok = replies.filter { $0.code / 100 == 2 }.count
        var o = DeliveryOutcome(kind: .delivered, reply: replies[0], target: target, detail: "end of data: \(detail)", perRecipient: replies)
        if ok == replies.count { return o }
        let firstFailure = replies.first { $0.code / 100 != 2 } ?? replies[0]
        if ok == 0 {
            o.kind = replies.allSatisfy(\.isPermanent) ? .rejected : .tempfailed
            o.reply = firstFailure
        } else {
            o.kind = .partial
            o.reply = SMTPReply(451, "4.3.0", "Downstream took \(ok) of \(replies.count) recipients (\(firstFailure.summary)); try again later")
        }
        return o
    }

    /// Why a REQUIRETLS message cannot go on over this connection (RFC 8689 §4.2.1, §5), or
    /// nil. Without a verified certificate (a configuration changed under a session) it is a
    /// tempfail; a relay that no longer offers REQUIRETLS gets the RFC's 5.7.30.
    static func requireTLSRefusal(_ conn: DownstreamConnection) -> DeliveryOutcome? {
        guard conn.encrypted, conn.tlsVerified else {
            return DeliveryOutcome(kind: .tempfailed, reply: SMTPReply(451, "4.7.30", "REQUIRETLS: no verified TLS to the downstream, try again later"),
                                   target: conn.target, detail: "REQUIRETLS message, downstream connection not TLS-verified; not sent")
        }
        guard conn.lmtp || conn.capabilities.contains("REQUIRETLS") else {
            return DeliveryOutcome(kind: .rejected, reply: SMTPReply(550, "5.7.30", "REQUIRETLS support required but the next hop does not offer it"),
                                   target: conn.target, detail: "REQUIRETLS message, downstream does not offer REQUIRETLS; not sent")
        }
        return nil
    }

    /// Our own copy could not be read back: nothing was delivered, the target is not blamed.
    static func spoolUnreadable(_ e: SpoolReadError, target: String) -> DeliveryOutcome {
        DeliveryOutcome(kind: .localError, reply: SMTPReply(451, "4.3.0", "Local error reading the message, try again later"),
                        target: target, detail: "\(e); nothing delivered")
    }

    static let unknownAfterDot = SMTPReply(451, "4.4.2", "Downstream connection lost after end of data; the message may have been delivered, try again later")

    /// The downstream's reply for the client, with an enhanced code added where the
    /// downstream sent none.
    func passThrough(_ r: SMTPReply) -> SMTPReply {
        // Only a final answer is passed on: a 1xx or 3xx here (a 354 above all, which the
        // client's framer would take for the start of message text) becomes a tempfail.
        guard (200..<600).contains(r.code), r.code / 100 != 3 else {
            return SMTPReply(451, "4.4.0", "Downstream answered \(r.code) out of sequence, try again later")
        }
        let e = r.enhanced ?? "\(r.code / 100).0.0"
        return SMTPReply(code: r.code, enhanced: e, lines: r.lines)
    }
}
