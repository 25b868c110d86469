/// mailgate: the command line. A thin layer: every command calls into the modules.
///
/// `serve` runs the gateway, `check-config` validates a configuration, `log verify|tail|query`
/// read the decision log, `version` prints the linked C libraries.
import ArgumentParser
import Foundation
import Gateway
import PolicyEngine
import Checks
import DecisionLog
import LogSink
import DNSResolver
import MailAuth
import SMTPProtocol
import Logging

@main
struct MailGate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mailgate",
        abstract: "An anti-spam SMTP policy gateway in front of your mail server.",
        subcommands: [Serve.self, CheckConfig.self, PolicyCommand.self, CheckCommand.self, DNSCommand.self, GreylistCommand.self, UserCommand.self, Log.self, Version.self])
}

func loadConfig(_ path: String?) throws -> GatewayConfig {
    guard let path else { return GatewayConfig() }
    do {
        return try ConfigLoader.load(path: path)
    } catch let errors as [ConfigError] {
        for e in errors { FileHandle.standardError.write(Data("\(e)\n".utf8)) }
        throw ExitCode(2)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway (embedded defaults without --config).")

    @Option(help: "Configuration file (YAML).") var config: String?

    func run() async throws {
        let onLoops = EventLoopExecutor.installIfAsked(ProcessInfo.processInfo.environment)
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = Logger(label: "mailgate")
        if onLoops { logger.notice("tasks run on the NIO event loops (MAILGATE_NIO_EXECUTOR=1)") }
        let cfg = try loadConfig(config)
        let log: DecisionLog
        do {
            log = try DecisionLog(path: cfg.log.path,
                                  durability: cfg.log.durability == "fsync" ? .fsync : .groupCommit(milliseconds: cfg.log.groupCommitMs),
                                  rotation: cfg.log.rotation)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        // SIGHUP reloads the policies; it must never kill the gateway, as its default would.
        signal(SIGHUP, SIG_IGN)
        let server: GatewayServer
        do {
            server = try GatewayServer(config: cfg, log: log)
        } catch {
            // An invalid policy or certificate: refuse to start, with every error and its place.
            let what = error is TLSSetupError ? "a TLS certificate cannot be used" : error is PasswdFileError ? "the passwd-file is invalid" : "the policy is invalid"
            FileHandle.standardError.write(Data("\(error)\nmailgate: \(what); not starting\n".utf8))
            log.close()
            throw ExitCode(2)
        }
        server.raiseDescriptorLimit()
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hup.setEventHandler {
            let errors = server.reloadPolicies()
            if errors.isEmpty {
                logger.notice("SIGHUP: policy reloaded: \(cfg.listeners.compactMap { server.policy(listener: $0.name).map { "\($0.name) \($0.version)" } }.joined(separator: ", "))")
            } else {
                logger.error("SIGHUP: new policy refused, the running one stays in force:\n\(errors.joined(separator: "\n"))")
            }
            for e in server.reloadUsers() {
                logger.error("SIGHUP: passwd-file refused, the users in force stay: \(e)")
            }
            for e in server.reloadCertificates() {
                logger.error("SIGHUP: new certificate refused, the one in use stays in force: \(e)")
            }
        }
        hup.resume()
        log.append(LogRecord(event: "gateway.start", fields: [
            ("listeners", .array(cfg.listeners.map { .string("\($0.name)=\($0.bind.joined(separator: ","))") })),
            ("downstream", .array(cfg.downstream.targets.map { .string($0) })),
            ("policies", .array(cfg.listeners.compactMap { l in server.policy(listener: l.name).map { .string("\(l.name)=\($0.name) \($0.version)") } })),
        ]))
        do {
            try await server.start()
        } catch {
            logger.critical("cannot listen: \(error)")
            log.close()
            throw ExitCode(1)
        }
        for a in server.boundAddresses() {
            logger.notice("listening on \(a.pathname.map { "unix:\($0)" } ?? "\(a.ipAddress ?? "?"):\(a.port ?? 0)")")
        }
        logger.notice("delivering to \(cfg.downstream.targets.joined(separator: ", ")); decision log \(cfg.log.path)")
        let signalName: String = await withCheckedContinuation { cont in
            let once = Once()
            var sources: [DispatchSourceSignal] = []
            for (sig, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
                let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                src.setEventHandler { if once.fire() { cont.resume(returning: name) } }
                src.resume()
                sources.append(src)
            }
            SignalSources.keep(sources + [hup])
        }
        logger.notice("\(signalName): shutting down (grace \(cfg.shutdownGracePeriod)s)")
        await server.shutdown()
        log.append(LogRecord(event: "gateway.stop", fields: [("signal", .string(signalName))]))
        log.close()
        logger.notice("stopped")
    }
}

final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    func fire() -> Bool { lock.lock(); defer { lock.unlock() }; if fired { return false }; fired = true; return true }
}

enum SignalSources {
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []
    static func keep(_ s: [DispatchSourceSignal]) { sources = s }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate a configuration file.")
    @Argument(help: "Configuration file (YAML).") var file: String

    func run() throws {
        let cfg = try loadConfig(file)
        var bad = false
        for path in Set(cfg.listeners.compactMap { cfg.policyPath(for: $0) }).sorted() {
            if !checkPolicy(path) { bad = true }
        }
        if bad { throw ExitCode(2) }
        print("\(file): OK")
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print versions of MailGate and its C libraries.")
    func run() {
        print("mailgate 0.1.0 (ldns \(LDNSLibrary.version), opendkim \(OpenDKIMLibrary.version))")
    }
}

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Read the decision log.", subcommands: [Verify.self, Tail.self, Query.self, Why.self, Report.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify the hash chain of a decision log and the files rotated from it (FILE.STAMP), or every gateway's chain in the PostgreSQL sink.")
        @Argument(help: "The log file.") var file: String?
        @Option(help: "Verify the shared PostgreSQL sink instead (postgres://mailgate_reader@host/db).") var postgres: String?

        func run() async throws {
            if let postgres { return try await verifySink(postgres) }
            guard let file else { throw ValidationError("name the log file, or --postgres URL") }
            let r: LogVerification
            let progress = isatty(2) == 1
            do {
                r = try LogVerifier.verifySet(path: file, progress: progress ? { f, n in
                    FileHandle.standardError.write(Data("\rmailgate: \(f): \(n) records verified…".utf8))
                } : nil)
                if progress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            } catch {
                throw CLIError.failed(error)
            }
            for n in r.notes { print("NOTE \(n)") }
            if r.ok {
                let files = r.files > 1 ? " in \(r.files) files" : ""
                print("\(file): OK, \(r.records) records\(files), chain intact (last seq \(r.lastSeq))")
            } else {
                for p in r.problems { print("FAIL \(p)") }
                throw ExitCode(1)
            }
        }
    }

    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the last records; -f follows the file.")
        @Option(name: .shortAndLong, help: "How many records.") var n = 20
        @Flag(name: .shortAndLong, help: "Keep printing new records.") var follow = false
        @Flag(help: "Print raw JSON lines.") var json = false
        @Argument(help: "The log file.") var file = "var/decisions.log"

        func run() throws {
            let lines: [String]
            do { lines = try LogReader.lastLines(path: file, count: n) } catch { throw CLIError.failed(error) }
            for l in lines {
                if json { print(l) }
                else if let r = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any] { FoldedChecks.expand(r).forEach { print(LogFormat.line($0)) } }
            }
            guard follow else { return }
            guard let fh = FileHandle(forReadingAtPath: file) else { return }
            fh.seekToEndOfFile()
            var partial = Data()
            while true {
                let d = fh.availableData
                if d.isEmpty { Thread.sleep(forTimeInterval: 0.2); continue }
                partial.append(d)
                while let nl = partial.firstIndex(of: 10) {
                    let line = partial[partial.startIndex..<nl]
                    partial = Data(partial[(nl + 1)...])
                    if json { print(String(decoding: line, as: UTF8.self)) }
                    else if let o = try? JSONSerialization.jsonObject(with: line) as? [String: Any] { FoldedChecks.expand(o).forEach { print(LogFormat.line($0)) } }
                    fflush(nil)
                }
            }
        }
    }

    struct Query: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Find records by time, client, action, stage, check, sender, recipient.")
        @Option(help: "From this time on (RFC 3339 prefix, e.g. 2026-11-25T10).") var since: String?
        @Option(help: "Before this time.") var until: String?
        @Option(help: "Client address or CIDR (192.0.2.0/24, 2001:db8::/32).") var client: String?
        @Option(help: "Session id.") var session: String?
        @Option(help: "Event: session.open, verdict, transaction, session.close, session.refused…") var event: String?
        @Option(help: "Action: accept, reject, tempfail, continue.") var action: String?
        @Option(help: "Stage: connect, helo, mail, rcpt, data, message.") var stage: String?
        @Option(help: "Check: size, helo, relay, protocol, limits, data…") var check: String?
        @Option(help: "Envelope sender.") var sender: String?
        @Option(help: "Envelope recipient.") var recipient: String?
        @Option(help: "table or json.") var format = "table"
        @Option(help: "Read the shared PostgreSQL sink (every gateway) instead of files.") var postgres: String?
        @Argument(help: "The log file.") var file = "var/decisions.log"

        func run() async throws {
            var f = LogFilter()
            f.since = since
            f.until = until
            if let c = client {
                guard let net = IPNetwork(c) else { throw ValidationError("bad --client \(c)") }
                f.client = net
            }
            f.session = session
            f.event = event
            f.action = action
            f.stage = stage
            f.check = check
            f.sender = sender
            f.recipient = recipient
            guard ["table", "json"].contains(format) else { throw ValidationError("--format is table or json") }
            var count = 0
            let json = format == "json"
            do {
                if let postgres {
                    count = try await PostgresLogSource.with(url: postgres) { [f] src in
                        let match = f.matcher()
                        var n = 0
                        try await src.lines(since: f.since, until: f.until, session: f.session) { line in
                            let found = match(Array(line.utf8)[...])
                            if json && !found.isEmpty { n += 1; print(line); return }
                            for r in found { n += 1; print(LogFormat.line(r)) }
                        }
                        return n
                    }
                } else {
                    // A line with several matches (its folded verdicts) is printed once as JSON.
                    var lastLine: Substring = ""
                    try f.scan(path: file) { r, l in
                        if json {
                            if l == lastLine { return }
                            lastLine = l
                            print(l)
                        } else {
                            print(LogFormat.line(r))
                        }
                        count += 1
                    }
                }
            } catch { throw CLIError.failed(error) }
            if format == "table" { FileHandle.standardError.write(Data("\(count) records\n".utf8)) }
        }
    }
}

extension Log {
    struct Why: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tell the story of one session from the log: the id a refusal's reply ends with ([id …]), or a transaction id.")
        @Argument(help: "A session id (20 hex digits) or transaction id (SESSION.N).") var id: String
        @Argument(help: "The log file.") var file = "var/decisions.log"
        @Flag(help: "Print the session's raw JSON lines.") var json = false
        @Option(help: "Read the shared PostgreSQL sink (every gateway) instead of the file.") var postgres: String?

        func run() async throws {
            // As pasted from a bounce: `[id 6745c1a29f3e01b4]` or the bare id.
            var ref = id.trimmingCharacters(in: CharacterSet(charactersIn: "[]").union(.whitespaces))
            if ref.hasPrefix("id ") { ref = String(ref.dropFirst(3)).trimmingCharacters(in: .whitespaces) }
            let records: [(record: [String: Any], line: String)]
            do {
                if let postgres {
                    records = try await PostgresLogSource.with(url: postgres) { [ref] src in
                        var out: [(record: [String: Any], line: String)] = []
                        try await src.lines(session: SessionID.session(of: ref)) { line in
                            if let r = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
                                for e in FoldedChecks.expand(r) { out.append((e, line)) }
                            }
                        }
                        return SendableRecords(out)
                    }.records
                } else {
                    records = try SessionSearch.records(of: ref, path: file)
                }
            } catch { throw CLIError.failed(error) }
            guard !records.isEmpty else {
                FileHandle.standardError.write(Data("mailgate: no session \(ref) in \(postgres.map { _ in "the PostgreSQL sink" } ?? file)\n".utf8))
                throw ExitCode(1)
            }
            if json {
                // Each line once (its folded verdicts share it).
                var last = ""
                for r in records where r.line != last {
                    print(r.line)
                    last = r.line
                }
                return
            }
            for l in LogStory.tell(records.map(\.record), id: ref) { print(l) }
        }
    }
}

/// Parsed records handed out of a PostgreSQL read (JSONSerialization's values are plain
/// Foundation values, read by one task at a time).
struct SendableRecords: @unchecked Sendable {
    let records: [(record: [String: Any], line: String)]
    init(_ r: [(record: [String: Any], line: String)]) { records = r }
}

extension Log.Verify {
    /// Every gateway's chain in the sink.
    func verifySink(_ url: String) async throws {
        let progress = isatty(2) == 1
        let chains: [ChainCheck]
        do {
            chains = try await PostgresLogSource.with(url: url) { src in
                try await src.verify(progress: progress ? { n in FileHandle.standardError.write(Data("\rmailgate: \(n) rows verified…".utf8)) } : nil)
            }
        } catch { throw CLIError.failed(error) }
        if progress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        var ok = true
        for c in chains {
            for n in c.notes { print("NOTE \(n)") }
            if c.ok {
                print("\(c.gateway): OK, \(c.records) records, chain intact (seq \(c.firstSeq) to \(c.lastSeq))")
            } else {
                ok = false
                for p in c.problems { print("FAIL \(p)") }
            }
        }
        if chains.isEmpty { print("the sink holds no records") }
        if !ok { throw ExitCode(1) }
    }
}

/// A command that could not do its work (a file it cannot read, an input it cannot parse):
/// one plain line on stderr, exit 2, never a Foundation error dump.
enum CLIError {
    static func failed(_ error: Error) -> ExitCode {
        FileHandle.standardError.write(Data("mailgate: \(error)\n".utf8))
        return ExitCode(2)
    }

    /// The text of a file, or the one line that says why it cannot be read.
    static func readText(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failed(Message("cannot read \(path): \(String(cString: strerror(errno)))")) }
        close(fd)
        guard let d = FileManager.default.contents(atPath: path) else { throw failed(Message("cannot read \(path)")) }
        return String(decoding: d, as: UTF8.self)
    }

    struct Message: Error, CustomStringConvertible {
        let description: String
        init(_ s: String) { description = s }
    }
}

/// One record as a table row: time, session, client, event, then the decision.
enum LogFormat {
    static func line(_ r: [String: Any]) -> String {
        func s(_ k: String) -> String { (r[k]).map { "\($0)" } ?? "" }
        var cols = [s("ts"), s("session"), s("client").isEmpty ? "-" : s("client"), s("event")]
        switch s("event") {
        case "verdict":
            cols += ["\(s("stage"))/\(s("check"))=\(s("result"))", s("action"), s("reply"), s("reason")]
        case "transaction":
            let rc = (r["recipients"] as? [String])?.joined(separator: ",") ?? ""
            cols += ["<\(s("sender"))> -> \(rc)", "size=\(s("size"))", s("action"), s("reply")]
        case "session.open":
            cols += ["listener=\(s("listener"))", "port=\(s("port"))"]
        case "session.close":
            cols += ["reason=\(s("reason"))", "transactions=\(s("transactions"))"]
        case "session.refused":
            cols += [s("action"), s("reply"), s("reason")]
        default:
            break
        }
        return cols.filter { !$0.isEmpty }.joined(separator: "  ")
    }
}
