/// PostgresTestServer: a throwaway PostgreSQL server for the tests that need one.
import Foundation

/// A PostgreSQL server from Debian's packages, started once per test run on 127.0.0.1 in a
/// temporary directory (as the `postgres` user when the tests run as root), and stopped by
/// the pid in its postmaster.pid when the test process exits. MAILGATE_TEST_POSTGRES_URL
/// points the tests at a server of your own instead.
public enum PostgresServer {
    nonisolated(unsafe) static var pidToStop: Int32 = 0

    static let started: Result<String, Error> = {
        if let u = ProcessInfo.processInfo.environment["MAILGATE_TEST_POSTGRES_URL"] { return .success(u) }
        do { return .success(try start()) } catch { return .failure(error) }
    }()

    /// The server's URL, starting it on first use. initdb and pg_ctl take seconds: they run
    /// on a thread of their own, never on the task pool that the other tests share.
    public static func url() async throws -> String {
        try await offPool { try started.get() }
    }

    /// Runs blocking work on a new thread and waits for it without holding a pool thread.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            Thread { cont.resume(with: Result { try body() }) }.start()
        }
    }

    public struct Failure: Error, CustomStringConvertible { public var description: String }

    static func binDir() throws -> String {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap(Int.init).sorted()
        guard let v = versions.last else { throw Failure(description: "PostgreSQL is not installed (bin/setup installs it)") }
        return "\(base)/\(v)/bin"
    }

    /// Runs a program (as postgres when root) with posix_spawn and waitpid, its output to a
    /// file. Not Foundation's Process: a pipe would stay open as long as the server pg_ctl
    /// starts, and its waitUntilExit can miss the exit when called off a run loop.
    @discardableResult
    static func run(_ argv: [String], outputFile: String, asPostgres: Bool = true) throws -> String {
        var args = argv
        if asPostgres && getuid() == 0 { args = ["/usr/sbin/runuser", "-u", "postgres", "--"] + args }
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        let cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, args[0], &fa, nil, cargs, environ)
        guard rc == 0 else { throw Failure(description: "\(args[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &status, 0) } while r == -1 && errno == EINTR
        let text = (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
        // ECHILD: someone else reaped it; the next step shows whether it worked.
        let exited = r == -1 ? 0 : (status >> 8) & 0xff
        guard exited == 0 else { throw Failure(description: "\(argv.joined(separator: " ")) failed (\(exited)): \(text)") }
        return text
    }

    static func start() throws -> String {
        let bin = try binDir()
        let dir = "/tmp/mailgate-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if getuid() == 0 {
            guard let pw = getpwnam("postgres") else { throw Failure(description: "no postgres user") }
            chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
        try run(["\(bin)/initdb", "-D", "\(dir)/data", "-A", "trust", "-U", "mailgate", "--no-sync"], outputFile: "\(dir)/initdb.out")
        // A free port: bind 0, read it, close, and let PostgreSQL take it.
        let port = freePort()
        try run(["\(bin)/pg_ctl", "-D", "\(dir)/data", "-l", "\(dir)/log", "-w", "-t", "60", "start",
                 "-o", "-p \(port) -c listen_addresses=127.0.0.1 -k \(dir) -c fsync=off -c max_connections=50"], outputFile: "\(dir)/pg_ctl.out")
        let pidText = try String(contentsOfFile: "\(dir)/data/postmaster.pid", encoding: .utf8)
        pidToStop = Int32(pidText.split(separator: "\n").first ?? "") ?? 0
        atexit {
            if PostgresServer.pidToStop > 0 { kill(PostgresServer.pidToStop, SIGINT) }
        }
        return "postgres://mailgate@127.0.0.1:\(port)/postgres"
    }

    /// Creates a database on the test server (each test that wants empty tables has its own).
    public static func createDatabase(_ name: String) async throws {
        let url = try await self.url()
        try await offPool { try run(["/usr/bin/psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE \(name)"],
                outputFile: NSTemporaryDirectory() + "mailgate-psql-\(name).out", asPostgres: false) }
    }

    /// The test server's URL for `database`, as `user` (trust: no password).
    public static func url(database: String, user: String = "mailgate") async throws -> String {
        let base = try await url()
        guard let at = base.range(of: "@"), let slash = base.range(of: "/", options: .backwards) else { return base }
        return "postgres://\(user)@" + base[at.upperBound..<slash.lowerBound] + "/\(database)"
    }

    /// Runs psql on `database` (as the server's superuser unless `user` is given) with
    /// `args` (`-c SQL`, `-f FILE`); its output, or a Failure with it.
    @discardableResult
    public static func psql(database: String, user: String = "mailgate", _ args: [String]) async throws -> String {
        let u = try await url(database: database, user: user)
        let out = NSTemporaryDirectory() + "mailgate-psql-\(database)-\(UInt32.random(in: 0...UInt32.max)).out"
        return try await offPool { try run(["/usr/bin/psql", u, "-q", "-X", "-v", "ON_ERROR_STOP=1"] + args, outputFile: out, asPostgres: false) }
    }

    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
