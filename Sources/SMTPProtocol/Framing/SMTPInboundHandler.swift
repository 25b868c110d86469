import NIOCore

/// The channel side of `SMTPInboundFramer`: frames what the client sends and watches what
/// the server writes, so that it sees the 354 and the answer to STARTTLS exactly where they
/// fall in the byte stream.
///
/// STARTTLS (RFC 3207) without plaintext injection (CVE-2011-0411): after a STARTTLS line
/// the framer holds everything that follows. When the server's next reply is a 220, that
/// reply (the first reply after those owed to commands pipelined before STARTTLS, RFC 3207
/// letting STARTTLS end a group) is written and, in the same event-loop step, the octets held are thrown away, the
/// framer starts over and `startTLS` puts the TLS handler in front of this one: nothing the
/// client sent in plaintext after STARTTLS is ever read as a command, whether it came in
/// the same segment or later, and nothing sent after the 220 reaches the framer without
/// passing through TLS. Any other reply releases what was held. Held octets are bounded by
/// `maxHeld`; past it the connection is closed.
public final class SMTPInboundHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = SMTPInbound
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Octets kept after a STARTTLS line while it is being answered.
    public static let maxHeld = 4096

    private var framer: SMTPInboundFramer
    /// A partial line carried over to the next read (bounded by the framer), or what
    /// follows a STARTTLS line (bounded by `maxHeld`).
    private var pending: ByteBuffer?
    /// Inserts the TLS handler in front of this one; nil when the listener has no TLS.
    private let startTLS: ((ChannelHandlerContext) throws -> Void)?
    /// The greeting has been written (a 220 before it never starts TLS).
    private var greeted = false
    /// Octets thrown away at the last STARTTLS, reported with the handshake's outcome.
    private var discarded = 0
    /// Command lines handed on and not yet answered (at least one reply each), and how
    /// many of them came before the STARTTLS line being held: their replies are not its answer.
    private var unanswered = 0
    private var beforeSTARTTLS = 0

    public init(maxLineLength: Int = 1000, startTLS: ((ChannelHandlerContext) throws -> Void)? = nil) {
        framer = SMTPInboundFramer(maxLineLength: maxLineLength)
        self.startTLS = startTLS
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if var carried = pending {
            pending = nil
            carried.writeBuffer(&input)
            input = carried
        }
        frame(context: context, &input)
    }

    private func frame(context: ChannelHandlerContext, _ input: inout ByteBuffer) {
        while true {
            let command = framer.readingCommands
            guard let item = framer.next(&input) else { break }
            if command, case .line = item {
                if framer.held { beforeSTARTTLS = unanswered }
                unanswered += 1
            }
            context.fireChannelRead(wrapInboundOut(item))
        }
        guard input.readableBytes > 0 else { return }
        if framer.held && input.readableBytes > Self.maxHeld {
            context.fireErrorCaught(SMTPFramingError.tooMuchAfterSTARTTLS)
            context.close(promise: nil)
            return
        }
        input.discardReadBytes()
        pending = input
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let reply = unwrapOutboundIn(data)
        defer { greeted = true }
        if greeted { unanswered = max(0, unanswered - 1) }
        if reply.readableBytesView.starts(with: "354".utf8) { framer.dataReplySent() }
        guard greeted, framer.held else { return context.write(data, promise: promise) }
        // A reply to a command pipelined before STARTTLS: still holding.
        if beforeSTARTTLS > 0 {
            beforeSTARTTLS -= 1
            return context.write(data, promise: promise)
        }
        if reply.readableBytesView.starts(with: "220".utf8), let startTLS {
            context.writeAndFlush(data, promise: promise)
            discarded = pending?.readableBytes ?? 0
            pending = nil
            framer.reset()
            unanswered = 0
            do { try startTLS(context) } catch {
                context.fireErrorCaught(error)
                context.close(promise: nil)
            }
            return
        }
        context.write(data, promise: promise)
        framer.release()
        if var held = pending {
            pending = nil
            frame(context: context, &held)
            // Not from a read: without this the async channel would hold them until the next one.
            context.fireChannelReadComplete()
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let done = event as? SMTPTLSEstablished {
            var info = done.info
            info.discardedOctets = discarded
            discarded = 0
            context.fireChannelRead(wrapInboundOut(.tls(info)))
            // Not from a read: without this the async channel would hold it until the next one.
            context.fireChannelReadComplete()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

public enum SMTPFramingError: Error, CustomStringConvertible {
    case tooMuchAfterSTARTTLS
    public var description: String {
        "more than \(SMTPInboundHandler.maxHeld) octets sent after STARTTLS before its answer"
    }
}
