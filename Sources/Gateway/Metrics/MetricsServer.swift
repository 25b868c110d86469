import Foundation
import NIOCore
import NIOPosix
import NIOHTTP1
import DecisionLog

/// A small HTTP/1.1 server on `metrics.listen`, through NIO's HTTP codec: `GET /metrics`
/// (Prometheus text format) and `GET /health` (JSON; 503 when the gateway would tempfail
/// mail). One request per connection; requests are bounded by the codec.
enum MetricsServer {
    static func start(on addr: BindAddress, group: EventLoopGroup, shared: GatewayShared) async throws -> Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHTTPHandler(shared: shared, group: group))
                }
            }
            .bind(host: addr.host, port: addr.port).get()
    }
}

final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let shared: GatewayShared
    let group: EventLoopGroup
    // Event loop only.
    private var head: HTTPRequestHead?

    init(shared: GatewayShared, group: EventLoopGroup) {
        self.shared = shared
        self.group = group
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            respond(to: h, context: context)
        }
    }

    private func respond(to h: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
        guard h.method == .GET || h.method == .HEAD else {
            return write(context, .methodNotAllowed, "text/plain", Array("GET only\n".utf8))
        }
        switch path {
        case "/metrics":
            let body = shared.metrics.exposition(log: shared.log, sessions: shared.registry.count)
            write(context, .ok, "text/plain; version=0.0.4; charset=utf-8", body)
        case "/health":
            let loop = context.eventLoop
            let bound = NIOLoopBound(context, eventLoop: loop)
            let shared = self.shared, group = self.group
            loop.makeFutureWithTask { await Health.check(shared: shared, group: group) }.whenSuccess { report in
                self.write(bound.value, report.ok ? .ok : .serviceUnavailable, "application/json", report.json)
            }
        default:
            write(context, .notFound, "text/plain", Array("not found: /metrics or /health\n".utf8))
        }
    }

    private func write(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ type: String, _ body: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}
