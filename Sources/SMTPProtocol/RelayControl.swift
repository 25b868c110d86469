/// The relay decision for one recipient (no open relay, for any address form), shared by
/// the gateway's session and the simulator so they cannot disagree.
public enum RelayControl {
    public struct Refusal: Sendable, Equatable {
        /// `denied` (not a local domain) or `routing` (a routing character in the local part).
        public var result: String
        public var reply: SMTPReply
        public var reason: String
    }

    /// Nil when the recipient may be taken. Clients in authorizedAddresses (and
    /// authenticated ones) may relay; others only reach local domains, and only with local
    /// parts that carry no routing character unless `allowUntrustedRouting`.
    public static func check(_ to: Mailbox, isLocal: Bool, clientTrusted: Bool, client: String,
                             allowUntrustedRouting: Bool) -> Refusal? {
        if clientTrusted { return nil }
        if !isLocal {
            return Refusal(result: "denied", reply: SMTPReply(550, "5.7.1", "<\(to)>: Relay access denied"),
                           reason: "domain \(to.domainKey) is not local and client \(client) is not in authorizedAddresses")
        }
        if let c = to.routingCharacter, !allowUntrustedRouting {
            return Refusal(result: "routing", reply: SMTPReply(550, "5.7.1", "<\(to)>: Relay access denied (sender-specified routing)"),
                           reason: "local part holds routing character '\(c)' and client \(client) is not in authorizedAddresses")
        }
        return nil
    }
}
