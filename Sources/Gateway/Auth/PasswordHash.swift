import CCrypt

/// Password hashes of a Dovecot-style passwd-file, through libxcrypt's crypt(3): checked in
/// constant time, made with a salt from the OS's randomness. Slow by design (yescrypt,
/// SHA-512 crypt, bcrypt): call it off the event loops.
public enum PasswordHash {
    /// Dovecot's scheme names and the crypt(3) hash prefixes each accepts. `CRYPT` takes any
    /// hash libxcrypt knows (yescrypt `$y$` is what `mailgate user add` writes).
    public static let schemes: [String: [String]] = [
        "SHA512-CRYPT": ["$6$"], "SHA256-CRYPT": ["$5$"], "BLF-CRYPT": ["$2y$", "$2b$", "$2a$"],
        "CRYPT": ["$y$", "$gy$", "$7$", "$6$", "$5$", "$2y$", "$2b$", "$2a$"],
    ]
    /// What `make` writes unless told otherwise.
    public static let defaultScheme = "CRYPT"
    /// Longer passwords are refused before hashing (bcrypt reads only 72 octets anyway).
    public static let maxPasswordLength = 1024

    /// True when `password` hashes to `hash` (a crypt(3) string). Constant time in the
    /// comparison; a malformed hash never matches.
    public static func verify(_ password: String, hash: String) -> Bool {
        guard password.utf8.count <= maxPasswordLength, !password.utf8.contains(0), !hash.isEmpty else { return false }
        guard let computed = crypt(password, setting: hash) else { return false }
        return constantTimeEqual(Array(computed.utf8), Array(hash.utf8))
    }

    /// A new hash of `password` for `scheme` (`{SCHEME}` prefix included).
    public static func make(_ password: String, scheme: String = defaultScheme) throws -> String {
        guard let prefix = schemes[scheme]?.first else { throw PasswordHashError.unknownScheme(scheme) }
        guard password.utf8.count <= maxPasswordLength, !password.utf8.contains(0) else { throw PasswordHashError.badPassword }
        var salt = [CChar](repeating: 0, count: Int(CRYPT_GENSALT_OUTPUT_SIZE))
        guard crypt_gensalt_rn(prefix, 0, nil, 0, &salt, Int32(salt.count)) != nil else { throw PasswordHashError.noSalt(scheme) }
        let setting = String(decoding: salt.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let h = crypt(password, setting: setting) else { throw PasswordHashError.noSalt(scheme) }
        return "{\(scheme)}\(h)"
    }

    static func crypt(_ password: String, setting: String) -> String? {
        let data = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<crypt_data>.size, alignment: MemoryLayout<crypt_data>.alignment)
        defer {
            data.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
            data.deallocate()
        }
        data.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
        guard let out = crypt_rn(password, setting, data, Int32(MemoryLayout<crypt_data>.size)) else { return nil }
        let s = String(cString: out)
        // libxcrypt's failure tokens start with '*'.
        return s.hasPrefix("*") ? nil : s
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}

public enum PasswordHashError: Error, CustomStringConvertible {
    case unknownScheme(String), badPassword, noSalt(String)
    public var description: String {
        switch self {
        case .unknownScheme(let s): return "unknown scheme {\(s)} (known: \(PasswordHash.schemes.keys.sorted().joined(separator: ", ")))"
        case .badPassword: return "the password is longer than \(PasswordHash.maxPasswordLength) octets or holds a NUL"
        case .noSalt(let s): return "libxcrypt cannot make a {\(s)} hash"
        }
    }
}
