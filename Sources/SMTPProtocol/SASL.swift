import Foundation

/// SMTP AUTH's side of SASL (RFC 4954) for the two mechanisms a password check needs:
/// PLAIN (RFC 4616) and LOGIN. Pure: decoding and the exchange's steps; the password check
/// is the driver's.
public enum SASLMechanism: String, Sendable, CaseIterable {
    case plain = "PLAIN", login = "LOGIN"
}

/// What a client claims: checked by the driver against the passwd-file.
public struct SMTPCredentials: Sendable, Equatable, CustomStringConvertible {
    public var mechanism: SASLMechanism
    public var user: String
    public var password: String
    public init(mechanism: SASLMechanism, user: String, password: String) {
        self.mechanism = mechanism
        self.user = user
        self.password = password
    }
    /// Never the password.
    public var description: String { "\(mechanism.rawValue) user=\(user)" }
}

/// A user the driver has accepted, with the sender addresses it may use (verifyIdentity).
public struct SMTPAuthenticatedUser: Sendable, Equatable {
    public var name: String
    /// Addresses listed for the user; empty: `name` itself if it is an address, else
    /// `name@` any local domain.
    public var addresses: [String]
    public init(name: String, addresses: [String] = []) {
        self.name = name
        self.addresses = addresses
    }

    /// May this user send as `sender`?
    public func owns(_ sender: Mailbox, isLocalDomain: (String) -> Bool) -> Bool {
        let given = "\(sender.localPart)@\(sender.domainKey)".lowercased()
        if !addresses.isEmpty { return addresses.contains { $0.lowercased() == given } }
        if name.contains("@") { return name.lowercased() == given }
        return sender.localPart.lowercased() == name.lowercased() && isLocalDomain(sender.domainKey)
    }
}

/// The driver's answer to `checkCredentials`.
public enum SMTPCredentialCheck: Sendable, Equatable {
    case accepted(SMTPAuthenticatedUser)
    /// Unknown user or wrong password (never said which).
    case rejected
    /// The client's address has failed too often lately.
    case lockedOut
    /// The check could not be made (passwd-file unreadable…): why.
    case unavailable(String)
}

/// One AUTH exchange in progress.
struct SASLExchange: Sendable, Equatable {
    enum Step: Sendable, Equatable { case plain, loginUser, loginPassword(user: String) }
    var step: Step
    var mechanism: SASLMechanism { step == .plain ? .plain : .login }

    static let usernameChallenge = "VXNlcm5hbWU6"   // "Username:"
    static let passwordChallenge = "UGFzc3dvcmQ6"   // "Password:"

    /// Base64 (RFC 4648, padding required, as RFC 4954 §4 asks); `=` alone is empty.
    static func decode(_ text: Substring) -> [UInt8]? {
        if text == "=" { return [] }
        guard !text.isEmpty, text.utf8.count % 4 == 0, let d = Data(base64Encoded: String(text)) else { return nil }
        return Array(d)
    }

    /// PLAIN's message: `[authzid] NUL authcid NUL passwd`. Nil when malformed, or when it
    /// asks to act as someone else (not offered).
    static func plain(_ bytes: [UInt8]) -> (user: String, password: String)? {
        let parts = bytes.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let user = String(validating: parts[1], as: UTF8.self),
              let password = String(validating: parts[2], as: UTF8.self), !user.isEmpty,
              let authz = String(validating: parts[0], as: UTF8.self), authz.isEmpty || authz == user
        else { return nil }
        return (user, password)
    }
}
