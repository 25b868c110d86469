import NIOCore
import SMTPProtocol

/// The one place a session's channel pipeline is built: write-stall detection, the inbound
/// framer (lines and BDAT chunks), the per-read deadline. A handler that must see raw bytes (TLS) goes in front
/// of the framer, at `framerName`.
enum SessionPipeline {
    static let framerName = "smtp-framer"

    /// Must run on the channel's event loop. Returns the deadline handler the session drives.
    /// `tls`: the listener's certificates, and whether TLS starts at once (else at STARTTLS).
    static func configure(_ channel: Channel, timeout: TimeAmount, tls: (store: TLSContextStore, implicit: Bool)? = nil) throws -> IdleTimeoutHandler {
        let ops = channel.pipeline.syncOperations
        try ops.addHandler(IdleStateHandler(writeTimeout: timeout))
        try ops.addHandler(WriteStallHandler())
        let startTLS: ((ChannelHandlerContext) throws -> Void)? = tls.flatMap { t in
            t.implicit ? nil : { ctx in try TLSServerSetup.install(on: ctx.channel, before: ctx.handler, store: t.store) }
        }
        let framer = SMTPInboundHandler(maxLineLength: 1000, startTLS: startTLS)
        try ops.addHandler(framer, name: framerName)
        if let tls, tls.implicit { try TLSServerSetup.install(on: channel, before: framer, store: tls.store) }
        let idle = IdleTimeoutHandler(timeout: timeout)
        try ops.addHandler(idle)
        return idle
    }
}
