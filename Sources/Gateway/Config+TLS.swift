import Yams

extension ConfigLoader.Reader {
    /// A listener's TLS keys: `tls` (false, true for STARTTLS, or implicit), `tlsRequired`,
    /// `tlsCertificates` (a list of {certificate, key, names}), `tlsMinVersion`, `tlsCiphers`.
    mutating func readTLS(_ key: String, _ v: Node, into t: inout ListenerTLSConfig) {
        switch key {
        case "tls":
            if v.scalar?.string.lowercased() == "implicit" { t.mode = .implicit }
            else if let b = bool(v, "tls (true, false or implicit)") { t.mode = b ? .starttls : .off }
        case "tlsRequired": if let b = bool(v, key) { t.required = b }
        case "tlsMinVersion":
            if let s = string(v, key) {
                if s == "1.2" || s == "1.3" { t.minVersion = s } else { fail(v, "'tlsMinVersion' must be \"1.2\" or \"1.3\"") }
            }
        case "tlsCiphers": if let s = string(v, key) { t.ciphers = s }
        default:
            guard let seq = v.sequence, !seq.isEmpty else { fail(v, "'tlsCertificates' must be a non-empty list"); return }
            t.certificates = seq.compactMap { readCertificate($0) }
        }
    }

    mutating func readCertificate(_ n: Node) -> ListenerTLSConfig.Certificate? {
        var cert: String?, keyFile: String?, names: [String] = []
        for (k, _, v) in mapping(n, "tlsCertificates entry", allowed: ["certificate", "key", "names"]) {
            switch k {
            case "certificate": cert = string(v, k)
            case "key": keyFile = string(v, k)
            default: names = strings(v, k)?.map { $0.lowercased() } ?? []
            }
        }
        guard let cert, let keyFile else { fail(n, "a tlsCertificates entry needs 'certificate' and 'key' (PEM files)"); return nil }
        return ListenerTLSConfig.Certificate(certificate: cert, key: keyFile, names: names)
    }
}
