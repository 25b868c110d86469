import NIOCore

/// The channel side of `SMTPInboundFramer`: frames what the client sends and watches what
/// the server writes, so that it sees the 354 exactly where it falls in the byte stream.
public final class SMTPInboundHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = SMTPInbound
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var framer: SMTPInboundFramer
    /// A partial line carried over to the next read (bounded by the framer).
    private var pending: ByteBuffer?

    public init(maxLineLength: Int = 1000) {
        framer = SMTPInboundFramer(maxLineLength: maxLineLength)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if var carried = pending {
            pending = nil
            carried.writeBuffer(&input)
            input = carried
        }
        while let item = framer.next(&input) {
            context.fireChannelRead(wrapInboundOut(item))
        }
        if input.readableBytes > 0 {
            input.discardReadBytes()
            pending = input
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let reply = unwrapOutboundIn(data)
        if reply.readableBytesView.starts(with: "354".utf8) { framer.dataReplySent() }
        context.write(data, promise: promise)
    }
}
