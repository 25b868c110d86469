import NIOCore
import NIOSSL
import NIOTLS
import SMTPProtocol

/// Puts a server TLS layer in front of the inbound framer: NIO's `SNIHandler` reads the
/// client's server name from its ClientHello, then the TLS handler for that name's
/// certificate takes its place, with a watcher of the handshake on each side of it. Runs on
/// the channel's event loop (at STARTTLS's 220, or for implicit TLS when the pipeline is built).
enum TLSServerSetup {
    static func install(on channel: Channel, before framer: ChannelHandler, store: TLSContextStore) throws {
        let observer = TLSHandshakeObserver()
        let sni = ByteToMessageHandler(SNIHandler { result in
            if case .hostname(let name) = result { observer.serverName = name.lowercased() }
            let ctx = store.context(for: observer.serverName)
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers(
                    [ServerHelloWatcher(observer), NIOSSLServerHandler(context: ctx), observer], position: .before(framer))
            }
        })
        try channel.pipeline.syncOperations.addHandler(sni, position: .before(framer))
    }
}

/// Behind the TLS handler: when its handshake completes, tells the framer (and so the
/// session) the version, the cipher suite and the server name.
final class TLSHandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    // Event loop only.
    var serverName: String?
    var cipher: UInt16?

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            let info = SMTPTLSInfo(version: Self.name(ssl?.tlsVersion), cipher: cipher.map(TLSCipherNames.name) ?? "unknown",
                                   serverName: serverName)
            context.fireUserInboundEventTriggered(event)
            context.fireUserInboundEventTriggered(SMTPTLSEstablished(info))
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    static func name(_ v: TLSVersion?) -> String {
        switch v {
        case .tlsv13: return "TLSv1.3"
        case .tlsv12: return "TLSv1.2"
        case .tlsv11: return "TLSv1.1"
        case .tlsv1: return "TLSv1"
        default: return "unknown"
        }
    }
}

/// In front of the TLS handler: reads the cipher suite the server chose from its
/// ServerHello, the first handshake record it writes (in the clear in every TLS version).
/// swift-nio-ssl does not expose the negotiated cipher. (It stays in the pipeline: taking
/// it out from inside the TLS handler's write stalled the handshake.)
final class ServerHelloWatcher: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let observer: TLSHandshakeObserver

    init(_ observer: TLSHandshakeObserver) { self.observer = observer }

    private var seen = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if !seen {
            seen = true
            observer.cipher = Self.cipherSuite(inServerHello: unwrapOutboundIn(data))
        }
        context.write(data, promise: promise)
    }

    /// The cipher_suite field of a ServerHello at the start of `b` (RFC 8446 §4.1.3):
    /// record header (5), handshake header (4), legacy_version (2), random (32),
    /// legacy_session_id (1 + n), cipher_suite (2). Nil if `b` does not start with one.
    static func cipherSuite(inServerHello b: ByteBuffer) -> UInt16? {
        var r = b
        guard r.readInteger(as: UInt8.self) == 22, r.readInteger(as: UInt16.self) != nil, r.readInteger(as: UInt16.self) != nil,
              r.readInteger(as: UInt8.self) == 2, r.readSlice(length: 3) != nil, r.readSlice(length: 2 + 32) != nil,
              let sid = r.readInteger(as: UInt8.self), r.readSlice(length: Int(sid)) != nil
        else { return nil }
        return r.readInteger(as: UInt16.self)
    }
}

/// IANA names of the cipher suites swift-nio-ssl's BoringSSL can negotiate.
enum TLSCipherNames {
    static let names: [UInt16: String] = [
        0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
        0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    ]

    static func name(_ code: UInt16) -> String {
        if let n = names[code] { return n }
        let hex = String(code, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}
