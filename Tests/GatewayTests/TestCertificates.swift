import Foundation

/// Certificates made with Debian's openssl for a test: a CA, server certificates it signs
/// (one per name, ECDSA P-256, valid two days) and a self-signed one.
struct TestCertificates {
    let dir: String
    var caFile: String { dir + "/ca.pem" }

    init() async throws {
        dir = NSTemporaryDirectory() + "mailgate-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try await Self.sh(dir, """
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
              -days 2 -subj '/CN=MailGate Test CA' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign
            """)
    }

    /// `name.pem` and `name.key` for `name`, signed by the CA (or self-signed).
    @discardableResult
    func issue(_ name: String, file: String? = nil, selfSigned: Bool = false) async throws -> (certificate: String, key: String) {
        let base = file ?? name
        let sign = selfSigned ? "-signkey \(base).key" : "-CA ca.pem -CAkey ca.key -CAcreateserial"
        try await Self.sh(dir, """
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout \(base).key -out \(base).csr -subj '/CN=\(name)' && \
            printf 'subjectAltName=DNS:\(name)\\n' > \(base).ext && \
            openssl x509 -req -in \(base).csr \(sign) -out \(base).pem -days 2 -extfile \(base).ext
            """)
        return (dir + "/\(base).pem", dir + "/\(base).key")
    }

    static func sh(_ dir: String, _ script: String) async throws {
        let r = try await runProgram("/bin/sh", ["-c", script], cwd: dir)
        guard r.status == 0 else { throw NSError(domain: "openssl", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.output]) }
    }
}
