import NIOCore
import SMTPProtocol
import DecisionLog

extension Session {
    /// Refuses a connection before its session starts (connection limits, PROXY): logs
    /// `session.refused`, counts it, says `reply` (with the session's id, when replies carry
    /// it) or, without one, nothing, and closes.
    static func refuse(_ conn: NIOAsyncChannel<SMTPInbound, ByteBuffer>, id: String, client: (ip: IPAddress, port: Int),
                       listener: ListenerConfig, check: String, reply: SMTPReply?, reason: String, shared: GatewayShared) async {
        var f: [(String, JSONValue)] = [("client", .string(client.ip.description)), ("port", .int(client.port)), ("listener", .string(listener.name)),
                                        ("stage", "connect"), ("check", .string(check)), ("action", reply == nil ? "drop" : "tempfail")]
        if let r = reply { f.append(("reply", .string(r.summary))) }
        f.append(("reason", .string(reason)))
        shared.log.append(LogRecord(event: "session.refused", session: id, fields: f))
        shared.metrics.connectionRefused(listener: listener.name, check: check)
        let said = reply.map { shared.config.log.idInReplies ? $0.referencing(id) : $0 }
        try? await conn.executeThenClose { _, outbound in
            if let said { try await outbound.write(ByteBuffer(string: said.encoded)) }
        }
    }
}
