import NIOCore
import SMTPProtocol
import DecisionLog

/// Who a connection speaks for: its peer, or on a proxied listener the client its PROXY
/// header names (the address every check, rule, limit and record then uses).
struct ConnectionOrigin {
    var ip: IPAddress
    var port: Int
    /// For `session.open`: the header's version and command and the proxy it came through.
    var proxy: JSONValue?
}

extension Session {
    /// The origin of `conn`; nil when the connection was refused (not from a listed proxy, or
    /// a header that is invalid, late or missing), which is logged here.
    static func origin(of conn: NIOAsyncChannel<SMTPInbound, ByteBuffer>, proxy: EventLoopFuture<ProxyHeader>?, listener: ListenerConfig,
                       id: String, shared: GatewayShared) async -> ConnectionOrigin? {
        let remote = conn.channel.remoteAddress
        let peer = ConnectionOrigin(ip: remote?.ipAddress.flatMap { IPAddress($0) } ?? .v4(0), port: remote?.port ?? 0)
        guard let proxy else { return peer }
        func refuse(_ reply: SMTPReply?, _ why: String) async -> ConnectionOrigin? {
            await Session.refuse(conn, id: id, client: (peer.ip, peer.port), listener: listener, check: "proxy", reply: reply, reason: why, shared: shared)
            return nil
        }
        guard listener.proxy.addresses.contains(where: { $0.contains(peer.ip) }) else {
            return await refuse(SMTPReply(421, "4.7.0", "Connections to this port must come through the load balancer"),
                                "\(peer.ip) is not in proxyAddresses")
        }
        let header: ProxyHeader
        do { header = try await proxy.get() } catch { return await refuse(nil, "\(error)") }
        var o = peer
        var via: [(String, JSONValue)] = [("version", .int(header.version)), ("command", .string(header.command.rawValue)),
                                          ("via", .string("\(peer.ip):\(peer.port)"))]
        if header.command == .proxy, let s = header.source {
            o.ip = s.address
            o.port = s.port
            if let d = header.destination { via.append(("destination", .string("\(d.address):\(d.port)"))) }
        }
        o.proxy = .object(via)
        return o
    }
}
