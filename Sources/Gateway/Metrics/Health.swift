import Foundation
import NIOCore
import NIOPosix
import DecisionLog
import LogSink
import DNSResolver
import Greylist

/// What `/health` says: whether the decision log can be written and which downstream
/// targets answer. Unhealthy (503) when the gateway would tempfail mail: the log is not
/// writable, or no downstream target can be reached.
struct Health: Sendable {
    var ok: Bool
    var json: [UInt8]

    static func check(shared: GatewayShared, group: EventLoopGroup, probes: [HealthProbe] = []) async -> Health {
        let logOK = shared.log.isHealthy
        var targets: [JSONValue] = []
        var anyTarget = false
        for t in shared.config.downstream.targets {
            let (ok, detail) = await probe(t, group: group)
            anyTarget = anyTarget || ok
            targets.append(.object([("target", .string(t)), ("ok", .bool(ok)), ("detail", .string(detail))]))
        }
        var ok = logOK && anyTarget
        var fields: [(String, JSONValue)] = [
            ("log", .object([("ok", .bool(logOK)), ("path", .string(shared.log.path)), ("queued_octets", .int(shared.log.pendingOctets))])),
            ("downstream", .array(targets)),
        ]
        if let sink = shared.logSink {
            // Not a reason to tempfail: the local file holds every record and the sink catches up.
            let s = sink.status
            fields.append(("log_sink", .object([("state", .string(s.state.rawValue)), ("gateway", .string(sink.gateway)),
                                                ("shipped_seq", .int(s.shippedSeq)), ("lag", .int(sink.lag)), ("detail", .string(s.detail))])))
        }
        for p in probes {
            let (pok, detail) = await p.run()
            ok = ok && pok
            fields.append((p.name, .object([("ok", .bool(pok)), ("detail", .string(detail))])))
        }
        let body: JSONValue = .object([("status", .string(ok ? "ok" : "unhealthy"))] + fields + [("sessions", .int(shared.registry.count))])
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

/// A dependency `/health` asks about: the DNS servers when a policy runs a DNS check, the
/// greylist store when a policy greylists. Either failing would tempfail mail.
struct HealthProbe: Sendable {
    let name: String
    let run: @Sendable () async -> (Bool, String)

    /// The servers answer a question (any answer, NXDOMAIN included; a fresh name each time,
    /// so that the cache cannot answer it).
    static func dns(_ resolver: DNSResolver) -> HealthProbe {
        HealthProbe(name: "dns") {
            let a = await resolver.query("mailgate-health-\(UInt32.random(in: 0...UInt32.max)).invalid", .a)
            if case .tempFail(let why) = a { return (false, why) }
            return (true, "answered")
        }
    }

    /// The store answers a read.
    static func greylist(_ service: GreylistService) -> HealthProbe {
        HealthProbe(name: "greylist") {
            do {
                _ = try await service.store().list(limit: 1)
                return (true, service.config.store.rawValue)
            } catch {
                return (false, "\(error)")
            }
        }
    }
}
