import SMTPProtocol

extension Session {
    /// Waits for the TLS handshake (after STARTTLS's 220, or for implicit TLS before the
    /// greeting), bounded by connectionTimeout, and tells the machine how it went.
    func awaitHandshake(_ inbound: inout Inbound) async {
        idle.setBusy(false)
        let item = await next(&inbound)
        idle.setBusy(true)
        switch item {
        case .success(.tls(let info)):
            run.restartAfterTLS()
            await feed(.tlsEstablished(info))
        case .success:
            await feed(.tlsFailed("internal error: input before the TLS handshake completed"))
        case .failure(let ended):
            switch ended.event {
            case .timeout:
                await feed(.tlsFailed("no TLS handshake within connectionTimeout \(listener.connectionTimeout)s"))
            case .closed(_, let detail):
                await feed(.tlsFailed("TLS handshake failed: \(detail ?? "the client closed the connection")"))
            default:
                await feed(ended.event)
            }
        }
    }
}
