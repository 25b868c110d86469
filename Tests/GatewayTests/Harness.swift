import Foundation
import NIOCore
import NIOPosix
import DecisionLog
import SMTPProtocol
import PolicyEngine
@testable import Gateway

/// A downstream SMTP server for tests: records every message byte for byte and can be told
/// to refuse, stall or drop.
final class RecordingDownstream: @unchecked Sendable {
    struct Message: Sendable {
        var mailFrom: String
        var rcpts: [String]
        var data: [UInt8]
        /// The MAIL and RCPT command lines as they came.
        var lines: [String] = []
    }
    enum Behaviour: Sendable {
        case accept
        case rejectRcpt(String)          // reply line for every RCPT, e.g. "550 5.1.1 no such user"
        case rejectRcptFor(String, String) // this address gets this reply; others are accepted
        case rejectData(String)          // reply line after the final dot
        case stallAfterDot               // never answer the final dot
        case dropDuringData              // close the connection on the first data line
        case greeting(String)            // greet with this line, e.g. "421 4.3.2 busy"
        case rejectDataFor(String, String) // LMTP: this recipient gets this reply after the dot
    }

    let behaviour: Behaviour
    /// Speaks LMTP (RFC 2033): LHLO, and one reply per recipient after the dot.
    var lmtp = false
    /// Offers DSN (RFC 3461) in its EHLO reply.
    var dsn = false
    private let lock = NSLock()
    private var _messages: [Message] = []
    private var _connections = 0
    var channel: Channel?
    var port: Int { channel!.localAddress!.port! }

    init(_ b: Behaviour) { behaviour = b }

    var messages: [Message] { lock.withLock { _messages } }
    var connections: Int { lock.withLock { _connections } }

    static func start(_ b: Behaviour = .accept, lmtp: Bool = false, unix: String? = nil, dsn: Bool = false) async throws -> RecordingDownstream {
        let d = RecordingDownstream(b)
        d.lmtp = lmtp
        d.dsn = dsn
        let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<SMTPLine, ByteBuffer>> = { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPLineFramer(maxLineLength: 1 << 20)))
                return try NIOAsyncChannel<SMTPLine, ByteBuffer>(wrappingChannelSynchronously: ch)
            }
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        let server: NIOAsyncChannel<NIOAsyncChannel<SMTPLine, ByteBuffer>, Never>
        if let path = unix {
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
        } else {
            server = try await bootstrap.serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: "127.0.0.1", port: 0, childChannelInitializer: initializer)
        }
        d.channel = server.channel
        Task {
            try? await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { g in
                    for try await conn in inbound { g.addTask { await d.serve(conn) } }
                }
            }
        }
        return d
    }

    func stop() { channel?.close(promise: nil) }

    private func serve(_ conn: NIOAsyncChannel<SMTPLine, ByteBuffer>) async {
        lock.withLock { _connections += 1 }
        try? await conn.executeThenClose { inbound, out in
            func say(_ s: String) async throws { try await out.write(ByteBuffer(string: s + "\r\n")) }
            if case .greeting(let g) = behaviour {
                try await say(g)
                return
            }
            try await say("220 downstream.test ESMTP")
            var inData = false
            var current = Message(mailFrom: "", rcpts: [], data: [])
            for try await line in inbound {
                var bytes = Array(line.bytes.readableBytesView)
                if inData {
                    if case .dropDuringData = behaviour { return }
                    if bytes == [UInt8(ascii: ".")] {
                        inData = false
                        if lmtp {
                            var m = current
                            m.rcpts = []
                            for r in current.rcpts {
                                if case .rejectDataFor(let who, let reply) = behaviour, r == who { try await say(reply) } else {
                                    m.rcpts.append(r)
                                    try await say("250 2.1.5 <\(r)> delivered")
                                }
                            }
                            if !m.rcpts.isEmpty { lock.withLock { _messages.append(m) } }
                            current = Message(mailFrom: "", rcpts: [], data: [])
                            continue
                        }
                        switch behaviour {
                        case .rejectData(let r): try await say(r)
                        case .stallAfterDot: try await Task.sleep(for: .seconds(30))
                        default:
                            let m = current
                            lock.withLock { _messages.append(m) }
                            try await say("250 2.0.0 Ok: queued as TEST\(lock.withLock { _messages.count })")
                        }
                        current = Message(mailFrom: "", rcpts: [], data: [])
                        continue
                    }
                    if bytes.first == UInt8(ascii: ".") { bytes.removeFirst() }
                    current.data += bytes + [13, 10]
                    continue
                }
                let text = String(decoding: bytes, as: UTF8.self)
                let verb = text.prefix(4).uppercased()
                switch verb {
                case "LHLO" where lmtp: try await say("250-downstream.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES")
                case "EHLO" where lmtp, "HELO" where lmtp: try await say("500 5.5.1 use LHLO")
                case "EHLO": try await say("250-downstream.test\r\n\(dsn ? "250-DSN\r\n" : "")250-PIPELINING\r\n250-SIZE 100000000\r\n250-8BITMIME\r\n250 SMTPUTF8")
                case "HELO": try await say("250 downstream.test")
                case "MAIL":
                    current.mailFrom = String(text.dropFirst(11).prefix { $0 != ">" })
                    current.lines = [text]
                    try await say("250 2.1.0 Ok")
                case "RCPT":
                    if case .rejectRcpt(let r) = behaviour { try await say(r); continue }
                    if case .rejectRcptFor(let who, let r) = behaviour, text.dropFirst(9).hasPrefix(who + ">") { try await say(r); continue }
                    current.rcpts.append(String(text.dropFirst(9).prefix { $0 != ">" }))
                    current.lines.append(text)
                    try await say("250 2.1.5 Ok")
                case "DATA":
                    if current.rcpts.isEmpty { try await say("554 5.5.1 Error: no valid recipients"); continue }
                    inData = true
                    try await say("354 End data with <CR><LF>.<CR><LF>")
                case "RSET": current = Message(mailFrom: "", rcpts: [], data: []); try await say("250 2.0.0 Ok")
                case "QUIT": try await say("221 2.0.0 Bye"); return
                default: try await say("502 5.5.2 Error: command not recognized")
                }
            }
        }
    }
}

/// A gateway in this process on an ephemeral port, with its own directory and log.
final class TestGateway: @unchecked Sendable {
    let dir: String
    let server: GatewayServer
    let log: DecisionLog
    var port: Int { server.boundAddresses().first!.port! }
    var logPath: String { log.path }

    /// `configure` edits the defaults: one listener on 127.0.0.1:0, domain example.org.
    init(downstream: [String], checks: [any Check] = [], logPath: String? = nil, clock: TestClock? = nil,
         authLines: LineSink? = nil,
         configure: (inout GatewayConfig) -> Void = { _ in }) async throws {
        dir = NSTemporaryDirectory() + "mailgate-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var c = GatewayConfig()
        c.listeners[0].bind = ["127.0.0.1:0"]
        c.listeners[0].helloName = .name("gw.test")
        c.domains = ["example.org"]
        c.downstream.targets = downstream
        c.downstream.connectTimeout = 2
        c.downstream.commandTimeout = 3
        c.downstream.dataTimeout = 3
        c.log.path = dir + "/decisions.log"
        c.log.groupCommitMs = 1
        // Exact replies in the tests; ReplyIDTests turns it back on.
        c.log.idInReplies = false
        c.spoolDirectory = dir + "/spool"
        c.spoolMemoryLimit = 64 * 1024
        if let p = logPath { c.log.path = p }
        configure(&c)
        log = try DecisionLog(path: c.log.path, durability: .groupCommit(milliseconds: 1), rotation: c.log.rotation)
        server = try GatewayServer(config: c, log: log, extraChecks: checks, greylistClock: clock?.now, authFailureLine: { l in authLines?.append(l) })
        try await server.start()
    }

    func stop() async {
        await server.shutdown(grace: .seconds(2))
        log.close()
    }

    /// All records, parsed.
    func records() async throws -> [[String: Any]] {
        try await log.flush()
        var out: [[String: Any]] = []
        try LogReader.forEachRecord(path: logPath) { r, _ in out.append(r) }
        return out
    }

    /// Waits until the session with a close record has logged it (sessions close after the
    /// client has already seen the reply).
    func records(waitingFor event: String, count: Int = 1) async throws -> [[String: Any]] {
        for _ in 0..<100 {
            let r = try await records()
            if r.filter({ $0["event"] as? String == event }).count >= count { return r }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await records()
    }
}

/// Lines the gateway writes for operators (the fail2ban lines), collected.
final class LineSink: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    func append(_ l: String) { lock.withLock { _lines.append(l) } }
    var lines: [String] { lock.withLock { _lines } }
}

enum Client {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("client.py").path

    /// Runs the client on a plain thread: the gateway's sessions run on the cooperative
    /// pool, which a blocking wait here would starve.
    static func run(_ mode: String, _ args: [String: Any]) async throws -> [String: Any] {
        let input = try JSONSerialization.data(withJSONObject: args)
        let data: Data = try await withCheckedThrowingContinuation { cont in
            Thread.detachNewThread {
                do { cont.resume(returning: try runBlocking(mode, input)) } catch { cont.resume(throwing: error) }
            }
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw NSError(domain: "client", code: 1, userInfo: [NSLocalizedDescriptionKey: String(decoding: data, as: UTF8.self)])
        }
        return obj
    }

    static func runBlocking(_ mode: String, _ input: Data) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, mode]
        let out = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardInput = inp
        try p.run()
        inp.fileHandleForWriting.write(input)
        try inp.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return data
    }

    /// Sends one message with Python's smtplib.
    static func smtplib(port: Int, from: String, to: [String], data: String, helo: String = "client.example.org",
                        options: [String] = [], source: String? = nil) async throws -> [String: Any] {
        var args: [String: Any] = ["port": port, "from": from, "to": to, "helo": helo, "mail_options": options,
                                   "data_b64": Data(data.utf8).base64EncodedString()]
        if let s = source { args["source"] = s }
        return try await run("smtplib", args)
    }

    /// A raw dialogue: each step sends bytes and reads `replies` replies.
    static func raw(port: Int, host: String = "127.0.0.1", _ steps: [(String?, Int)], timeout: Double = 20, source: String? = nil,
                    unix: String? = nil) async throws -> (greeting: String, replies: [[String]], closed: Bool) {
        let r = try await run("raw", ["port": port, "host": host, "timeout": timeout, "source": source ?? "", "unix": unix ?? "",
                                "steps": steps.map { s -> [String: Any] in
                                    var d: [String: Any] = ["replies": s.1]
                                    if let x = s.0 { d["send"] = x }
                                    return d
                                }])
        return (r["greeting"] as? String ?? "", r["replies"] as? [[String]] ?? [], r["closed"] as? Bool ?? false)
    }
}

extension Client {
    /// One step of a dialogue: bytes and how many replies they draw, or a TLS handshake.
    enum Step {
        case send(String, replies: Int)
        case tls(serverName: String? = nil, cafile: String? = nil)
        case sleep(Double)
        var json: [String: Any] {
            switch self {
            case .sleep(let s): return ["sleep": s, "replies": 0]
            case .send(let text, let n): return ["send": text, "replies": n]
            case .tls(let name, let ca):
                var o: [String: Any] = [:]
                if let name { o["server_name"] = name }
                if let ca { o["cafile"] = ca }
                return ["tls": o]
            }
        }
    }

    struct Dialogue {
        var greeting: String
        /// The replies of the `send` steps, in order.
        var replies: [[String]]
        var closed: Bool
        /// Each handshake: version, cipher and the certificate's CN, or error.
        var tls: [[String: String]]
    }

    /// A raw dialogue that can start TLS in the middle (after STARTTLS's 220) or, with
    /// `implicitTLS`, before the greeting.
    /// `early`: bytes sent at once, before the greeting.
    static func dialogue(port: Int, _ steps: [Step], implicitTLS: Step? = nil, early: String? = nil) async throws -> Dialogue {
        var args: [String: Any] = ["port": port, "timeout": 20, "steps": steps.map(\.json)]
        if let early { args["early"] = early }
        if let i = implicitTLS?.json["tls"] { args["implicit_tls"] = i }
        let r = try await run("raw", args)
        return Dialogue(greeting: r["greeting"] as? String ?? "", replies: r["replies"] as? [[String]] ?? [],
                        closed: r["closed"] as? Bool ?? false, tls: r["tls"] as? [[String: String]] ?? [])
    }
}

/// Runs a program to completion on a plain thread (never on the cooperative pool, which the
/// gateway's sessions need) and returns its exit status and combined output.
func runProgram(_ path: String, _ args: [String], cwd: String? = nil) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { cont in
        Thread.detachNewThread {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = args
            if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            do { try p.run() } catch { cont.resume(throwing: error); return }
            let d = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            cont.resume(returning: (p.terminationStatus, String(decoding: d, as: UTF8.self)))
        }
    }
}

/// A reply line without the ` [id SESSION]` that `log.idInReplies` appends.
func withoutID(_ line: String) -> String {
    guard line.hasSuffix("]"), let r = line.range(of: " [id ", options: .backwards),
          line.distance(from: r.upperBound, to: line.endIndex) == 21 else { return line }
    return String(line[..<r.lowerBound])
}
