import DecisionLog

extension GatewayServer {
    /// Reads every TLS listener's certificates; a file that cannot be used stops the start.
    static func makeTLSStores(_ config: GatewayConfig) throws -> [String: TLSContextStore] {
        var stores: [String: TLSContextStore] = [:]
        for l in config.listeners where l.tls.mode != .off {
            do { stores[l.name] = try TLSContextStore(l.tls) } catch {
                throw TLSSetupError(description: "listener '\(l.name)': \(error)")
            }
        }
        return stores
    }

    /// Reads the certificates again (SIGHUP). A listener whose new files are bad keeps the
    /// ones it serves; each outcome is logged. Returns the errors.
    @discardableResult
    public func reloadCertificates(reason: String = "sighup") -> [String] {
        var errors: [String] = []
        for (name, store) in tlsStores.sorted(by: { $0.key < $1.key }) {
            do {
                try store.reload()
                log.append(LogRecord(event: "tls.reload", fields: [("trigger", .string(reason)), ("result", "ok"), ("listener", .string(name))]))
            } catch {
                errors.append("listener '\(name)': \(error)")
                log.append(LogRecord(event: "tls.reload", fields: [
                    ("trigger", .string(reason)), ("result", "refused"), ("listener", .string(name)),
                    ("reason", .string("\(error); the certificates in use stay in force")),
                ]))
            }
        }
        return errors
    }

    /// With policyWatch: reloads a listener's certificates when one of its files changed.
    func reloadChangedCertificates() {
        guard tlsStores.values.contains(where: \.filesChanged) else { return }
        reloadCertificates(reason: "file-change")
    }
}
