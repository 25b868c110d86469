import Foundation

/// A Dovecot-style passwd-file (`user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields`):
/// the users SMTP AUTH accepts. Only the first two fields and, in the extra fields,
/// `addresses=a@x,b@y` (the senders the user may use under verifyIdentity) are read; the
/// rest is kept as it is when `mailgate user` rewrites the file. User names match without
/// regard to case. Comments (`#`) and blank lines are kept too.
public struct PasswdFile: Sendable {
    public struct Entry: Sendable, Equatable {
        public var user: String
        public var scheme: String
        /// The crypt(3) string, without `{SCHEME}`.
        public var hash: String
        public var addresses: [String]
        /// Fields 3 to 8 as they were (`::::::extra`), for rewriting.
        var rest: [Substring] = []
    }

    /// The file's lines; an entry's line is rebuilt from it when it changes.
    private(set) var lines: [Line] = []
    enum Line: Sendable { case text(String), entry(Entry) }

    public var entries: [Entry] { lines.compactMap { if case .entry(let e) = $0 { return e } else { return nil } } }

    public func entry(for user: String) -> Entry? {
        let key = user.lowercased()
        return entries.first { $0.user.lowercased() == key }
    }

    public init() {}

    /// Reads a file; every bad line is an error with its place (`file:line: …`).
    public static func load(path: String) throws -> PasswdFile {
        guard let data = FileManager.default.contents(atPath: path) else { throw PasswdFileError(["\(path): cannot read file"]) }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    public static func parse(_ text: String, file: String) throws -> PasswdFile {
        var f = PasswdFile(), errors: [String] = []
        var seen = Set<String>()
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("#") {
                if i > 0 || !line.isEmpty { f.lines.append(.text(String(line))) }
                continue
            }
            switch entry(line) {
            case .success(let e):
                if !seen.insert(e.user.lowercased()).inserted { errors.append("\(file):\(i + 1): user '\(e.user)' listed twice") }
                f.lines.append(.entry(e))
            case .failure(let why): errors.append("\(file):\(i + 1): \(why.message)")
            }
        }
        if case .text("") = f.lines.last { f.lines.removeLast() }
        guard errors.isEmpty else { throw PasswdFileError(errors) }
        return f
    }

    struct Problem: Error { let message: String }

    static func entry(_ line: Substring) -> Result<Entry, Problem> {
        let fields = line.split(separator: ":", maxSplits: 7, omittingEmptySubsequences: false)
        guard fields.count >= 2, !fields[0].isEmpty else { return .failure(Problem(message: "want user:{SCHEME}hash[:…]")) }
        let user = String(fields[0])
        let pw = fields[1]
        guard pw.hasPrefix("{"), let close = pw.firstIndex(of: "}") else {
            return .failure(Problem(message: "user '\(user)': the password needs a {SCHEME} prefix"))
        }
        let scheme = pw[pw.index(after: pw.startIndex)..<close].uppercased()
        let hash = String(pw[pw.index(after: close)...])
        guard let prefixes = PasswordHash.schemes[scheme] else {
            return .failure(Problem(message: "user '\(user)': scheme {\(scheme)} is not supported (use \(PasswordHash.schemes.keys.sorted().joined(separator: ", ")))"))
        }
        guard prefixes.contains(where: { hash.hasPrefix($0) }) else {
            return .failure(Problem(message: "user '\(user)': not a {\(scheme)} hash"))
        }
        let rest = Array(fields.dropFirst(2))
        var addresses: [String] = []
        if rest.count == 6 {
            for field in rest[5].split(separator: " ") where field.hasPrefix("addresses=") {
                addresses = field.dropFirst("addresses=".count).split(separator: ",").map { String($0).lowercased() }
            }
        }
        return .success(Entry(user: user, scheme: scheme, hash: hash, addresses: addresses, rest: rest))
    }

    // MARK: Editing (mailgate user)

    /// Adds or replaces `user`'s password (and, when given, addresses).
    public mutating func set(user: String, hashed: String, addresses: [String]? = nil) throws {
        guard !user.isEmpty, !user.contains(":"), !user.contains("\n"), !user.hasPrefix("#"),
              user.unicodeScalars.allSatisfy({ $0.value > 32 }) else { throw PasswdFileError(["bad user name '\(user)'"]) }
        guard case .success(var e) = Self.entry(Substring("\(user):\(hashed)")) else { throw PasswdFileError(["bad hash"]) }
        if let i = index(of: user), case .entry(let old) = lines[i] {
            e.rest = old.rest
            e.addresses = old.addresses
            if let addresses { e = Self.withAddresses(e, addresses) }
            lines[i] = .entry(e)
        } else {
            lines.append(.entry(Self.withAddresses(e, addresses ?? [])))
        }
    }

    @discardableResult
    public mutating func remove(user: String) -> Bool {
        guard let i = index(of: user) else { return false }
        lines.remove(at: i)
        return true
    }

    func index(of user: String) -> Int? {
        lines.firstIndex { if case .entry(let e) = $0 { return e.user.lowercased() == user.lowercased() } else { return false } }
    }

    static func withAddresses(_ e: Entry, _ addresses: [String]) -> Entry {
        var e = e
        e.addresses = addresses.map { $0.lowercased() }
        var rest = e.rest.isEmpty ? Array(repeating: Substring(""), count: 6) : e.rest
        while rest.count < 6 { rest.append("") }
        var extra = rest[5].split(separator: " ").filter { !$0.hasPrefix("addresses=") }
        if !addresses.isEmpty { extra.append(Substring("addresses=" + e.addresses.joined(separator: ","))) }
        rest[5] = Substring(extra.joined(separator: " "))
        e.rest = rest.allSatisfy(\.isEmpty) ? [] : rest
        return e
    }

    public var text: String {
        lines.map { line -> String in
            switch line {
            case .text(let t): return t
            case .entry(let e): return ([e.user, "{\(e.scheme)}\(e.hash)"] + e.rest.map(String.init)).joined(separator: ":")
            }
        }.joined(separator: "\n") + "\n"
    }

    /// Writes the file whole and replaces the old one atomically: the new file is created
    /// 0600 (never readable by others, even for a moment), takes the old file's owner, group
    /// and mode when there was one, and is fsynced before the rename (and the directory after).
    public func write(to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw PasswdFileError(["\(tmp): cannot create: \(String(cString: strerror(errno)))"]) }
        var old = stat()
        if stat(path, &old) == 0 {
            _ = fchown(fd, old.st_uid, old.st_gid)
            _ = fchmod(fd, old.st_mode & 0o777)
        }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            written += n
        }
        let synced = written == bytes.count && fsync(fd) == 0
        close(fd)
        guard synced, rename(tmp, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw PasswdFileError(["\(path): cannot replace: \(why)"])
        }
        let dir = open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY)
        if dir >= 0 { _ = fsync(dir); close(dir) }
    }
}

public struct PasswdFileError: Error, CustomStringConvertible {
    public let errors: [String]
    init(_ errors: [String]) { self.errors = errors }
    public var description: String { errors.joined(separator: "\n") }
}
