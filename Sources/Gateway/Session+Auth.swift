import SMTPProtocol

extension Session {
    /// Checks a password (off the event loops, with the per-address counter); an accepted
    /// user clears the policy's deferred rejections.
    @inline(never)
    func checkCredentials(_ c: SMTPCredentials) async -> SMTPServerEvent {
        guard let a = shared.authenticator else { return .credentialsChecked(.unavailable("no auth.passwdFile configured")) }
        let result = await a.check(c, client: client.clientIP)
        if case .accepted = result { run.authenticated() }
        return .credentialsChecked(result)
    }

    /// The fail2ban line: `mailgate: auth failure: client=IP mechanism=M user="U" result=R session=S`.
    /// The client comes first, so no user name can change it; the name is quoted, printable
    /// ASCII only, at most 64 characters.
    func reportAuthFailure(_ c: SMTPCredentials, result: String) {
        shared.authFailureLine("mailgate: auth failure: client=\(clientIPText) mechanism=\(c.mechanism.rawValue) user=\"\(Self.printable(c.user))\" result=\(result) session=\(id) listener=\(listener.name)")
    }

    static func printable(_ s: String) -> String {
        String(s.unicodeScalars.prefix(64).map { $0.value >= 32 && $0.value < 127 && $0 != "\"" && $0 != "\\" ? Character($0) : "?" })
    }
}
