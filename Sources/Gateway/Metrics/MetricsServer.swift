import Foundation
import NIOCore
import NIOPosix
import NIOHTTP1
import NIOConcurrencyHelpers
import DecisionLog

/// A small HTTP/1.1 server on `metrics.listen`, through NIO's HTTP codec: `GET /metrics`
/// (Prometheus text format) and `GET /health` (JSON; 503 when the gateway would tempfail
/// mail). One request per connection, at most `maxConnections` at once (more are closed at
/// once), each closed after `idleTimeout` without a whole request: a scraper cannot take
/// the descriptors the SMTP listeners need.
enum MetricsServer {
    static let maxConnections = 32
    static let idleTimeout = TimeAmount.seconds(10)

    static func start(on addr: BindAddress, group: EventLoopGroup, shared: GatewayShared, probes: [HealthProbe],
                      zones: @escaping @Sendable () -> [(zone: String, inService: Bool)]) async throws -> Channel {
        let open = NIOLockedValueBox(0)
        let health = HealthCache(probes: probes)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let admitted = open.withLockedValue { n in n < maxConnections ? { n += 1; return true }() : false }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                return channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(shared: shared, group: group, health: health, zones: zones))
                }
            }
            .bind(host: addr.host, port: addr.port).get()
    }
}

/// `/health` answers from a result at most two seconds old: scrapes do not each probe every
/// downstream target.
final class HealthCache: Sendable {
    private let cached = NIOLockedValueBox<(at: ContinuousClock.Instant, health: Health)?>(nil)
    let probes: [HealthProbe]

    init(probes: [HealthProbe]) { self.probes = probes }

    func get(shared: GatewayShared, group: EventLoopGroup) async -> Health {
        if let c = cached.withLockedValue({ $0 }), ContinuousClock.now - c.at < .seconds(2) { return c.health }
        let h = await Health.check(shared: shared, group: group, probes: probes)
        cached.withLockedValue { $0 = (ContinuousClock.now, h) }
        return h
    }
}

final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let shared: GatewayShared
    let group: EventLoopGroup
    let health: HealthCache
    let zones: @Sendable () -> [(zone: String, inService: Bool)]
    // Event loop only.
    private var head: HTTPRequestHead?

    init(shared: GatewayShared, group: EventLoopGroup, health: HealthCache, zones: @escaping @Sendable () -> [(zone: String, inService: Bool)]) {
        self.shared = shared
        self.group = group
        self.health = health
        self.zones = zones
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
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
            let body = shared.metrics.exposition(log: shared.log, sessions: shared.registry.count, zones: zones(), sink: shared.logSink)
            write(context, .ok, "text/plain; version=0.0.4; charset=utf-8", body)
        case "/health":
            let loop = context.eventLoop
            let bound = NIOLoopBound(context, eventLoop: loop)
            let shared = self.shared, group = self.group, health = self.health
            loop.makeFutureWithTask { await health.get(shared: shared, group: group) }.whenSuccess { report in
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
