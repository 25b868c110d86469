import Foundation
import Testing
import NIOCore
import DecisionLog
@testable import Gateway

/// Faults under load, end to end with the real `mailgate serve`: after each, every message
/// a client got 250 for is at the downstream exactly once, the gateway is alive (or
/// restarted cleanly) and `log verify` passes.
@Suite(.serialized) struct FaultTests {
    static func config(dir: String, port: Int, downstream: Int) throws {
        try """
        listeners:
          - bind: ["127.0.0.1:\(port)"]
            helloName: gw.test
        domains: [example.org]
        downstream: {targets: ["smtp:127.0.0.1:\(downstream)"], dataTimeout: 5}
        shutdownGracePeriod: 5

        """.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
    }

    static func messageIDs(_ down: RecordingDownstream) -> [String: Int] {
        var out: [String: Int] = [:]
        for m in down.messages {
            let text = String(decoding: m.data, as: UTF8.self)
            guard let r = text.range(of: "Message-ID: ") else { continue }
            let id = String(text[r.upperBound...].prefix { $0 != "\r\n" && $0 != "\r" })
            out[id, default: 0] += 1
        }
        return out
    }

    /// A port the kernel just handed out and released: a random one could be in use by the
    /// load's own client sockets, which take ephemeral ports from the same range.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw NSError(domain: "freePort", code: Int(errno)) }
        return Int(UInt16(bigEndian: a.sin_port))
    }

    /// The load client's outcome: message id → final reply code (0: no answer).
    static func load(port: Int, count: Int, concurrency: Int, seconds: Double) async throws -> [String: Int] {
        let r = try await Client.run("load", ["port": port, "count": count, "concurrency": concurrency, "seconds": seconds])
        return r["results"] as? [String: Int] ?? [:]
    }

    func check(_ sent: [String: Int], _ down: RecordingDownstream, inFlight: Int) -> (accepted: Int, unanswered: Int) {
        let delivered = Self.messageIDs(down)
        let accepted = sent.filter { $0.value == 250 }.map(\.key)
        for id in accepted { #expect(delivered[id] == 1, "\(id) got 250 and is at the downstream \(delivered[id] ?? 0) times") }
        #expect(delivered.values.allSatisfy { $0 == 1 }, "a message was delivered twice")
        // A message the downstream took but whose 250 never reached the client (the process
        // died in between) can exist only for sessions in flight at that moment.
        let unanswered = delivered.keys.filter { sent[$0] != 250 }.count
        #expect(unanswered <= inFlight)
        return (accepted.count, unanswered)
    }

    /// Starts `mailgate serve` in a new directory, loads it from 8 client threads, and sends
    /// `signal` 1.5 s in; returns once the process has exited and the load has ended.
    static func underLoad(_ signal: Int32) async throws -> (dir: String, port: Int, down: RecordingDownstream, process: Process, sent: [String: Int]) {
        let dir = NSTemporaryDirectory() + "mg-fault-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let down = try await RecordingDownstream.start()
        let port = try freePort()
        try config(dir: dir, port: port, downstream: down.port)
        let p = try await CLITests.serve(dir: dir, port: port)
        async let sent = load(port: port, count: 400, concurrency: 8, seconds: 4)
        try await Task.sleep(for: .milliseconds(1500))
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        return (dir, port, down, p, try await sent)
    }

    @Test func sigkillUnderLoadThenRestart() async throws {
        let (dir, port, down, _, results) = try await Self.underLoad(SIGKILL)
        let first = check(results, down, inFlight: 8)
        #expect(first.accepted > 0)
        // Restarted on the same log: it starts (a torn tail, if any, is kept aside), takes
        // mail again, and the chain verifies.
        let again = try await CLITests.serve(dir: dir, port: port)
        defer { if again.isRunning { kill(again.processIdentifier, SIGKILL) } }
        let r = try await Client.smtplib(port: port, from: "a@example.net", to: ["b@example.org"], data: "Subject: after\r\nMessage-ID: <after@example.net>\r\n\r\nx\r\n")
        #expect(r["ok"] as? Bool == true, "\(r)")
        kill(again.processIdentifier, SIGTERM)
        again.waitUntilExit()
        #expect(again.terminationStatus == 0)
        let (vs, v) = try await runProgram(CLITests.binary, ["log", "verify", "var/decisions.log"], cwd: dir)
        #expect(vs == 0, "\(v)")
        print("fault sigkill: \(results.count) sent, \(first.accepted) accepted, \(first.unanswered) delivered without the client's 250; log verify: \(v.split(separator: "\n").last ?? "")")
        down.stop()
    }

    @Test func sigtermUnderLoad() async throws {
        let (dir, _, down, p, results) = try await Self.underLoad(SIGTERM)
        let stderr = (try? String(contentsOfFile: dir + "/stderr.log", encoding: .utf8)) ?? ""
        #expect(p.terminationReason == .exit && p.terminationStatus == 0, "\(stderr.prefix(1500))")
        // A graceful stop lets transactions in flight finish: nothing is delivered unanswered.
        let outcome = check(results, down, inFlight: 0)
        #expect(outcome.accepted > 0)
        let (vs, v) = try await runProgram(CLITests.binary, ["log", "verify", "var/decisions.log"], cwd: dir)
        #expect(vs == 0, "\(v)")
        print("fault sigterm: \(results.count) sent, \(outcome.accepted) accepted, \(results.values.filter { $0 != 250 }.count) refused or cut")
        down.stop()
    }

    /// The decision log's disk fills up (a 48 KB tmpfs): mail is tempfailed from then on,
    /// every message that got 250 is at the downstream exactly once and nothing else is;
    /// with room again, the log starts (a torn tail kept aside) and verifies.
    @Test(.enabled(if: getuid() == 0)) func theLogDiskFillsUp() async throws {
        let mnt = NSTemporaryDirectory() + "mg-full-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let (ms, mo) = try await runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=48k", "tmpfs", mnt])
        try #require(ms == 0, "mount: \(mo)")
        defer { _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", mnt]).waitUntilExit() }
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"], logPath: mnt + "/decisions.log")
        var accepted: [String] = []
        var tempfailed = 0
        for i in 0..<40 {
            let id = "<full-\(i)@example.net>"
            let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"],
                                             data: "Subject: \(i)\r\nMessage-ID: \(id)\r\n\r\n" + String(repeating: "x", count: 200) + "\r\n")
            if r["ok"] as? Bool == true { accepted.append(id) } else if (r["code"] as? Int ?? 0) / 100 == 4 { tempfailed += 1 }
        }
        #expect(!gw.log.isHealthy)
        #expect(!accepted.isEmpty)
        #expect(tempfailed > 0)
        #expect(accepted.count + tempfailed == 40)
        let delivered = Self.messageIDs(down)
        #expect(Set(delivered.keys) == Set(accepted), "delivered without 250, or 250 without delivery")
        #expect(delivered.values.allSatisfy { $0 == 1 })
        await gw.server.shutdown(grace: .seconds(1))
        gw.log.close()
        // Room again: the log opens (keeping any torn tail aside) and its chain verifies.
        let (rs, ro) = try await runProgram("/bin/mount", ["-o", "remount,size=4m", mnt])
        try #require(rs == 0, "remount: \(ro)")
        let reopened = try DecisionLog(path: mnt + "/decisions.log")
        reopened.append(LogRecord(event: "test.after", session: nil, fields: []))
        try await reopened.flush()
        reopened.close()
        let v = try LogVerifier.verify(path: mnt + "/decisions.log")
        #expect(v.ok, "\(v.problems)")
        print("fault disk full: \(accepted.count) accepted, \(tempfailed) tempfailed, torn tail kept: \(reopened.recovered.map { "\($0.tornOctets) octets" } ?? "none")")
        down.stop()
    }

    /// 1,000 connections from one address: each is greeted or told 421, nothing traps, and
    /// mail flows again afterwards.
    @Test func aThousandConnectionsFromOneAddress() async throws {
        _ = ResourceLimits.raiseOpenFiles(needed: 4096)
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].connectionLimit = 500 }
        let r = try await Client.run("flood", ["port": gw.port, "count": 1000])
        let codes = r["codes"] as? [String: Int] ?? [:]
        #expect((codes["220"] ?? 0) + (codes["421"] ?? 0) == 1000, "\(codes)")
        #expect((codes["220"] ?? 0) <= 500)
        #expect((codes["421"] ?? 0) >= 500)
        let m = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: "Subject: s\r\n\r\nb\r\n")
        #expect(m["ok"] as? Bool == true, "\(m)")
        await gw.stop()
        down.stop()
    }

    /// Connections arriving in a burst as the gateway stops: a connection accepted while the
    /// listener closes is finished and closed, never dropped half-made (that trapped the
    /// process: swift-nio issue 2637, about one stop in four under load).
    @Test func connectionsArrivingWhileItStops() async throws {
        _ = ResourceLimits.raiseOpenFiles(needed: 4096)
        let down = try await RecordingDownstream.start()
        for round in 0..<4 {
            let dir = NSTemporaryDirectory() + "mg-stop-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let port = try Self.freePort()
            try Self.config(dir: dir, port: port, downstream: down.port)
            let p = try await CLITests.serve(dir: dir, port: port)
            let burst = Task.detached { Self.connectBurst(port: port, count: 300) }
            try await Task.sleep(for: .milliseconds(5))
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            _ = await burst.value
            let stderr = (try? String(contentsOfFile: dir + "/stderr.log", encoding: .utf8)) ?? ""
            #expect(p.terminationReason == .exit && p.terminationStatus == 0, "round \(round): \(stderr.prefix(1500))")
        }
        down.stop()
    }

    /// Opens `count` TCP connections as fast as it can, then closes them all; returns how
    /// many connected.
    static func connectBurst(port: Int, count: Int) -> Int {
        var fds: [Int32] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(UInt16(port).bigEndian)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &a) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            if ok { fds.append(fd) } else { Glibc.close(fd) }
        }
        fds.forEach { _ = Glibc.close($0) }
        return fds.count
    }
}
