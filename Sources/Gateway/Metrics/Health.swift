import Foundation
import NIOCore
import NIOPosix
import DecisionLog

/// What `/health` says: whether the decision log can be written and which downstream
/// targets answer. Unhealthy (503) when the gateway would tempfail mail: the log is not
/// writable, or no downstream target can be reached.
struct Health: Sendable {
    var ok: Bool
    var json: [UInt8]

    static func check(shared: GatewayShared, group: EventLoopGroup) async -> Health {
        let logOK = shared.log.isHealthy
        var targets: [JSONValue] = []
        var anyTarget = false
        for t in shared.config.downstream.targets {
            let (ok, detail) = await probe(t, group: group)
            anyTarget = anyTarget || ok
            targets.append(.object([("target", .string(t)), ("ok", .bool(ok)), ("detail", .string(detail))]))
        }
        let ok = logOK && anyTarget
        let body: JSONValue = .object([
            ("status", .string(ok ? "ok" : "unhealthy")),
            ("log", .object([("ok", .bool(logOK)), ("path", .string(shared.log.path)), ("queued_octets", .int(shared.log.pendingOctets))])),
            ("downstream", .array(targets)),
            ("sessions", .int(shared.registry.count)),
        ])
        var out: [UInt8] = []
        body.write(into: &out)
        out.append(10)
        return Health(ok: ok, json: out)
    }

    /// A target answers when a TCP (or unix socket) connection opens within a second, or,
    /// for a maildir, when its directory is writable.
    static func probe(_ text: String, group: EventLoopGroup) async -> (Bool, String) {
        guard let target = DownstreamTarget(text) else { return (false, "not a valid target") }
        guard let relay = target.relay else {
            if case .maildir(let dir) = target { return access(dir, W_OK) == 0 ? (true, "writable") : (false, String(cString: strerror(errno))) }
            return (false, "?")
        }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(1))
        do {
            let channel: Channel
            switch relay.endpoint {
            case .tcp(let host, let port): channel = try await bootstrap.connect(host: host, port: port).get()
            case .unix(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
            try? await channel.close()
            return (true, "connected")
        } catch {
            return (false, "\(error)")
        }
    }
}
