import NIOCore
import SMTPProtocol

/// The one place a session's channel pipeline is built: write-stall detection, the inbound
/// framer (lines and BDAT chunks), the per-read deadline. A handler that must see raw bytes (TLS) goes in front
/// of the framer, at `framerName`.
enum SessionPipeline {
    static let framerName = "smtp-framer"

    /// Must run on the channel's event loop. Returns the deadline handler the session drives.
    static func configure(_ channel: Channel, timeout: TimeAmount) throws -> IdleTimeoutHandler {
        let ops = channel.pipeline.syncOperations
        try ops.addHandler(IdleStateHandler(writeTimeout: timeout))
        try ops.addHandler(WriteStallHandler())
        try ops.addHandler(SMTPInboundHandler(maxLineLength: 1000), name: framerName)
        let idle = IdleTimeoutHandler(timeout: timeout)
        try ops.addHandler(idle)
        return idle
    }
}
