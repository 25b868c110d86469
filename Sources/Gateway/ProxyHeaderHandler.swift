import NIOCore
import SMTPProtocol

/// Why a connection's PROXY header did not come.
struct ProxyHeaderFailure: Error, CustomStringConvertible {
    let description: String
}

/// First in a proxied listener's pipeline: holds every octet back until the PROXY header is
/// whole, then hands it over (`header`), passes on whatever followed it and leaves the
/// pipeline. An invalid header, a timeout or a close fails `header`; nothing reaches the
/// framer then, and the session closes the connection.
final class ProxyHeaderHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private var promise: EventLoopPromise<ProxyHeader>?
    let header: EventLoopFuture<ProxyHeader>
    // Event loop only.
    private var seen: [UInt8] = []
    private var deadline: Scheduled<Void>?
    private var done = false

    init(eventLoop: EventLoop, timeout: TimeAmount) {
        self.timeout = timeout
        let p = eventLoop.makePromise(of: ProxyHeader.self)
        self.promise = p
        self.header = p.futureResult
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let seconds = timeout.nanoseconds / 1_000_000_000
        deadline = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            self?.fail("no PROXY header within \(seconds) s")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        let buffer = unwrapInboundIn(data)
        seen.append(contentsOf: buffer.readableBytesView)
        switch ProxyHeaderParser.parse(seen) {
        case .incomplete:
            // The parser decides within its limits; this only guards against a bug there.
            if seen.count > ProxyHeaderParser.maxLength { fail("PROXY header longer than \(ProxyHeaderParser.maxLength) octets") }
        case .invalid(let why):
            fail(why)
        case .header(let h, let length):
            done = true
            deadline?.cancel()
            let rest = seen.count > length ? Array(seen[length...]) : []
            seen = []
            promise?.succeed(h)
            promise = nil
            if !rest.isEmpty { context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: rest))) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("the connection closed before its PROXY header was whole")
        context.fireChannelInactive()
    }

    private func fail(_ why: String) {
        guard !done else { return }
        done = true
        deadline?.cancel()
        seen = []
        promise?.fail(ProxyHeaderFailure(description: why))
        promise = nil
    }
}
