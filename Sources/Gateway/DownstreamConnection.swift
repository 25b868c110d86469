import NIOCore
import NIOPosix
import SMTPProtocol

public enum DownstreamError: Error, CustomStringConvertible, Sendable {
    case connectFailed(String)
    case timeout(String)
    case closed
    case protocolError(String)
    case badGreeting(SMTPReply)
    case tlsUnavailable(String)

    public var description: String {
        switch self {
        case .connectFailed(let s): return "connect failed: \(s)"
        case .timeout(let what): return "timeout waiting for \(what)"
        case .closed: return "connection closed by downstream"
        case .protocolError(let s): return "protocol error: \(s)"
        case .badGreeting(let r): return "greeting refused: \(r.summary)"
        case .tlsUnavailable(let why): return "TLS required: \(why)"
        }
    }
}

/// Parses reply lines from the downstream and completes one promise per reply, in order
/// (so commands can be pipelined, RFC 2920).
final class SMTPClientHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = SMTPLine

    private var pending = CircularBuffer<EventLoopPromise<SMTPReply>>()
    private var lines: [String] = []
    private var failure: DownstreamError?
    /// The greeting's reply, expected from the moment the handler is in the pipeline, so a
    /// greeting that arrives before anyone asks is not mistaken for an unexpected reply.
    private(set) var greeting: EventLoopFuture<SMTPReply>?

    func handlerAdded(context: ChannelHandlerContext) {
        let p = context.eventLoop.makePromise(of: SMTPReply.self)
        pending.append(p)
        greeting = p.futureResult
    }

    /// Must be called on the channel's event loop.
    func expect(_ promise: EventLoopPromise<SMTPReply>) {
        if let f = failure { promise.fail(f); return }
        pending.append(promise)
    }

    /// A channel that never connected, or is torn down, still owes its promises an answer.
    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(.closed, context: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        let text = String(decoding: line.bytes.readableBytesView, as: UTF8.self)
        let u = Array(text.utf8)
        guard u.count >= 3, u[0...2].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              u.count == 3 || u[3] == UInt8(ascii: " ") || u[3] == UInt8(ascii: "-") else {
            failAll(.protocolError("malformed reply line"), context: context)
            return
        }
        let code = Int(u[0] - 0x30) * 100 + Int(u[1] - 0x30) * 10 + Int(u[2] - 0x30)
        let rest = u.count > 4 ? String(decoding: u[4...], as: UTF8.self) : ""
        // A reply of endless continuation lines is a broken or hostile downstream.
        guard lines.count < Self.maxReplyLines else {
            failAll(.protocolError("reply of more than \(Self.maxReplyLines) lines"), context: context)
            return
        }
        lines.append(rest)
        if u.count > 3 && u[3] == UInt8(ascii: "-") { return }
        let reply = Self.makeReply(code: code, lines: lines)
        lines = []
        guard !pending.isEmpty else {
            failAll(.protocolError("unexpected reply \(code)"), context: context)
            return
        }
        pending.removeFirst().succeed(reply)
    }

    /// The most lines one downstream reply may have.
    static let maxReplyLines = 100

    /// Splits an RFC 3463 code off the text when the downstream sends one.
    static func makeReply(code: Int, lines: [String]) -> SMTPReply {
        var enhanced: String?
        var texts = lines
        if let first = lines.first {
            let word = first.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            let parts = word[0].split(separator: ".")
            if parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }),
               let c = parts[0].first, String(c) == String(code / 100) {
                enhanced = String(word[0])
                texts = lines.map { l in
                    let w = l.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                    return w.count == 2 && w[0] == word[0] ? String(w[1]) : (w.count == 1 && w[0] == word[0] ? "" : l)
                }
            }
        }
        return SMTPReply(code: code, enhanced: enhanced, lines: texts)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.closed, context: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(.protocolError("\(error)"), context: context)
    }

    func failAll(_ error: DownstreamError, context: ChannelHandlerContext?) {
        if failure == nil { failure = error }
        while let p = pending.popFirst() { p.fail(error) }
        context?.close(promise: nil)
    }
}

/// One connection to a downstream SMTP or LMTP server, after greeting and EHLO (LHLO).
final class DownstreamConnection: @unchecked Sendable {
    let target: String
    let channel: Channel
    let handler: SMTPClientHandler
    /// RFC 2033: after the end of data, one reply per accepted recipient.
    let lmtp: Bool
    private(set) var capabilities: Set<String> = []
    var messages = 0
    /// The connection went through STARTTLS (and, when `tlsVerified`, its certificate was checked).
    private(set) var encrypted = false
    private(set) var tlsVerified = false
    /// For the transaction record: `plaintext`, `tls` or `tls-verified`.
    var tlsState: String { encrypted ? (tlsVerified ? "tls-verified" : "tls") : "plaintext" }

    private init(target: String, channel: Channel, handler: SMTPClientHandler, lmtp: Bool) {
        self.target = target
        self.channel = channel
        self.handler = handler
        self.lmtp = lmtp
    }

    var isActive: Bool { channel.isActive }
    var pipelining: Bool { capabilities.contains("PIPELINING") }

    static func connect(target: String, endpoint: DownstreamTarget.Endpoint, lmtp: Bool, helloName: String,
                        group: EventLoopGroup, connectTimeout: Int, commandTimeout: Int, tls: DownstreamTLS? = nil) async throws -> DownstreamConnection {
        let handler = SMTPClientHandler()
        let channel: Channel
        do {
            let bootstrap = ClientBootstrap(group: group)
                .connectTimeout(.seconds(Int64(connectTimeout)))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPLineFramer(maxLineLength: 4096)))
                        try ch.pipeline.syncOperations.addHandler(handler)
                    }
                }
            switch endpoint {
            case .tcp(let host, let port):
                channel = try await bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1).connect(host: host, port: port).get()
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch {
            throw DownstreamError.connectFailed("\(error)")
        }
        let conn = DownstreamConnection(target: target, channel: channel, handler: handler, lmtp: lmtp)
        do {
            let timer = channel.eventLoop.scheduleTask(in: .seconds(Int64(commandTimeout))) {
                handler.failAll(.timeout("greeting"), context: nil)
                channel.close(promise: nil)
            }
            let greeting = try await channel.eventLoop.flatSubmit { handler.greeting! }.get()
            timer.cancel()
            guard greeting.code == 220 else { throw DownstreamError.badGreeting(greeting) }
            try await conn.greet(helloName: helloName, timeout: commandTimeout)
            if let tls, case .tcp(let host, _) = endpoint { try await conn.startTLS(tls, host: host, helloName: helloName, timeout: commandTimeout) }
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return conn
    }

    /// EHLO (LHLO), or HELO when EHLO is refused; learns the capabilities.
    func greet(helloName: String, timeout: Int) async throws {
        var ehlo = try await command("\(lmtp ? "LHLO" : "EHLO") \(helloName)\r\n", timeout: timeout)
        if ehlo.code != 250 && lmtp { throw DownstreamError.badGreeting(ehlo) }
        if ehlo.code != 250 {
            ehlo = try await command("HELO \(helloName)\r\n", timeout: timeout)
            guard ehlo.code == 250 else { throw DownstreamError.badGreeting(ehlo) }
            capabilities = []
        } else {
            capabilities = Set(ehlo.lines.dropFirst().map { $0.split(separator: " ").first.map { $0.uppercased() } ?? "" })
        }
    }

    /// STARTTLS when offered (required: or no connection), then EHLO again. A failed
    /// handshake or certificate check fails the EHLO's reply, and so the connection.
    func startTLS(_ tls: DownstreamTLS, host: String, helloName: String, timeout: Int) async throws {
        let required = tls.config.mode == .required
        guard capabilities.contains("STARTTLS") else {
            if required { throw DownstreamError.tlsUnavailable("\(target) does not offer STARTTLS") }
            return
        }
        let r = try await command("STARTTLS\r\n", timeout: timeout)
        guard r.code == 220 else {
            if required { throw DownstreamError.tlsUnavailable("\(target) answered STARTTLS with \(r.summary)") }
            return
        }
        try await tls.start(on: channel, host: host)
        do { try await greet(helloName: helloName, timeout: timeout) } catch {
            throw DownstreamError.tlsUnavailable("handshake with \(target) failed: \(error)")
        }
        encrypted = true
        tlsVerified = tls.config.verifies
    }

    /// Registers `n` reply promises, writes `bytes` (if any), and waits for the replies.
    func expectReplies(_ n: Int, write bytes: ByteBuffer? = nil, timeout: Int, what: String) async throws -> [SMTPReply] {
        let loop = channel.eventLoop
        let handler = self.handler
        let channel = self.channel
        let future: EventLoopFuture<[SMTPReply]> = loop.flatSubmit {
            var futures: [EventLoopFuture<SMTPReply>] = []
            for _ in 0..<n {
                let p = loop.makePromise(of: SMTPReply.self)
                handler.expect(p)
                futures.append(p.futureResult)
            }
            if let bytes { channel.writeAndFlush(bytes, promise: nil) }
            let timer = loop.scheduleTask(in: .seconds(Int64(timeout))) {
                handler.failAll(.timeout(what), context: nil)
                channel.close(promise: nil)
            }
            let all = EventLoopFuture.whenAllSucceed(futures, on: loop)
            all.whenComplete { _ in timer.cancel() }
            return all
        }
        return try await future.get()
    }

    /// Sends `commands` and returns their replies: all at once when the downstream offers
    /// PIPELINING, else one by one, stopping early when `goOn(index, repliesSoFar)` says so
    /// (the replies are then fewer than the commands).
    func exchange(_ commands: [String], timeout: Int, what: String,
                  goOn: (Int, [SMTPReply]) -> Bool = { _, _ in true }) async throws -> [SMTPReply] {
        if pipelining {
            return try await expectReplies(commands.count, write: ByteBuffer(string: commands.map { $0 + "\r\n" }.joined()),
                                           timeout: timeout, what: what)
        }
        var replies: [SMTPReply] = []
        for (i, c) in commands.enumerated() {
            replies.append(try await command(c + "\r\n", timeout: timeout))
            if i < commands.count - 1 && !goOn(i, replies) { break }
        }
        return replies
    }

    func command(_ text: String, timeout: Int) async throws -> SMTPReply {
        try await expectReplies(1, write: ByteBuffer(string: text), timeout: timeout, what: text.split(separator: " ").first.map(String.init) ?? "reply").first!
    }

    func write(_ buffer: ByteBuffer) async throws {
        do {
            try await channel.writeAndFlush(buffer)
        } catch {
            throw DownstreamError.closed
        }
    }

    func close() {
        channel.close(promise: nil)
    }

    func quit() {
        channel.writeAndFlush(ByteBuffer(string: "QUIT\r\n")).whenComplete { [channel] _ in
            channel.close(promise: nil)
        }
    }
}
