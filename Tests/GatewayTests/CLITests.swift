import Foundation
import Testing
@testable import Gateway
import DecisionLog

/// The `mailgate` binary as an operator runs it.
@Suite struct CLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var binary: String {
        ProcessInfo.processInfo.environment["MAILGATE_BIN"] ?? root.appendingPathComponent(".build/debug/mailgate").path
    }

    func run(_ args: [String], cwd: String? = nil) async throws -> (Int32, String) {
        try await runProgram(Self.binary, args, cwd: cwd)
    }

    /// Starts `mailgate serve --config c.yaml` in `dir` and waits for its greeting on `port`.
    static func serve(dir: String, port: Int) async throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["serve", "--config", "c.yaml"]
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        // Kept beside the config, so a test can show what the process said before it died.
        FileManager.default.createFile(atPath: dir + "/stderr.log", contents: nil)
        p.standardError = FileHandle(forWritingAtPath: dir + "/stderr.log")
        try p.run()
        for _ in 0..<100 {
            if let r = try? await Client.raw(port: port, [("QUIT\r\n", 1)]), r.greeting.hasPrefix("220 ") { return p }
            try await Task.sleep(for: .milliseconds(100))
        }
        kill(p.processIdentifier, SIGKILL)
        throw NSError(domain: "serve", code: 1, userInfo: [NSLocalizedDescriptionKey: "mailgate serve did not greet on \(port)"])
    }

    /// A missing log file is one plain line and exit 2, never a Foundation error dump.
    @Test func logCommandsOnAMissingFileSayOnePlainLine() async throws {
        for cmd in [["log", "verify"], ["log", "query"], ["log", "tail"]] {
            let (status, out) = try await run(cmd + ["/nonexistent/decisions.log"])
            #expect(status == 2, "\(cmd)")
            #expect(out == "mailgate: cannot read /nonexistent/decisions.log: No such file or directory\n", "\(cmd): \(out)")
        }
    }

    /// `dns serve-fixtures` on a missing file or a bad line: one plain line, exit 2.
    @Test func serveFixturesSaysWhatIsWrongInOneLine() async throws {
        let (s1, o1) = try await run(["dns", "serve-fixtures", "/nonexistent/fixtures.txt"])
        #expect(s1 == 2 && o1 == "mailgate: cannot read /nonexistent/fixtures.txt: No such file or directory\n", "\(o1)")
        let bad = NSTemporaryDirectory() + "mg-fix-\(UUID().uuidString).txt"
        try "example.org. 300 IN A 192.0.2.1\nbad line here\n".write(toFile: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let (s2, o2) = try await run(["dns", "serve-fixtures", bad])
        #expect(s2 == 2 && o2 == "mailgate: \(bad): line 2: cannot parse 'bad line here'\n", "\(o2)")
    }

    @Test func checkConfig() async throws {
        let dir = NSTemporaryDirectory() + "mg-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let good = Self.root.appendingPathComponent("config/mailgate.example.yaml").path
        let (s1, o1) = try await run(["check-config", good])
        #expect(s1 == 0)
        #expect(o1 == "\(good): OK\n")
        // The production sample stays valid (its policy path is relative, as under systemd's WorkingDirectory).
        let (sp, op) = try await run(["check-config", "config/mailgate.production.yaml"], cwd: Self.root.path)
        #expect(sp == 0 && op.hasSuffix("config/mailgate.production.yaml: OK\n"), "\(op)")
        let bad = dir + "/bad.yaml"
        try "listeners:\n  - bind: [\"127.0.0.1:25\"]\n    colour: blue\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let (s2, o2) = try await run(["check-config", bad])
        #expect(s2 == 2)
        #expect(o2.hasPrefix("\(bad):3: unknown key 'colour' in listener"))
    }

    /// `mailgate user`: the password from stdin, never echoed or stored in the clear; the
    /// file is mode 0600, keeps comments, and its hashes check with libxcrypt.
    @Test func userCommandsKeepThePasswdFile() async throws {
        let dir = NSTemporaryDirectory() + "mg-user-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = dir + "/passwd"
        try "# MailGate users\n".write(toFile: file, atomically: true, encoding: .utf8)
        let bin = Self.binary
        let (s1, o1) = try await runProgram("/bin/sh", ["-c", "printf 'first-pw\\n' | '\(bin)' user add '\(file)' alice --address a@example.org --address al@example.net"])
        #expect(s1 == 0, "\(o1)")
        #expect(!o1.contains("first-pw"))
        let (s2, _) = try await runProgram("/bin/sh", ["-c", "printf 'bob-pw\\n' | '\(bin)' user add '\(file)' bob --scheme SHA512-CRYPT"])
        #expect(s2 == 0)
        let (_, list) = try await run(["user", "list", file])
        #expect(list == "alice  {CRYPT}  a@example.org,al@example.net\nbob  {SHA512-CRYPT}\n")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.hasPrefix("# MailGate users\nalice:{CRYPT}$y$"), "\(text)")
        #expect(text.contains("::::::addresses=a@example.org,al@example.net\nbob:{SHA512-CRYPT}$6$"), "\(text)")
        #expect(!text.contains("first-pw"))
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o644, "an existing file keeps its mode")
        let fresh = dir + "/fresh"
        let (s0, _) = try await runProgram("/bin/sh", ["-c", "printf 'pw\\n' | '\(bin)' user add '\(fresh)' carol"])
        #expect(s0 == 0)
        #expect(try FileManager.default.attributesOfItem(atPath: fresh)[.posixPermissions] as? Int == 0o600, "a new one is 0600")
        let (s3, _) = try await runProgram("/bin/sh", ["-c", "printf 'second-pw\\n' | '\(bin)' user passwd '\(file)' alice"])
        #expect(s3 == 0)
        let f = try PasswdFileReader.load(file)
        #expect(f.alice.map { PasswdFileReader.verify("second-pw", $0) } == true)
        #expect(f.alice.map { PasswdFileReader.verify("first-pw", $0) } == false)
        #expect(f.addresses == ["a@example.org", "al@example.net"], "passwd keeps the addresses")
        let (s4, _) = try await run(["user", "remove", file, "bob"])
        #expect(s4 == 0)
        let (s5, o5) = try await run(["user", "remove", file, "bob"])
        #expect(s5 != 0 && o5.contains("no user 'bob'"), "\(o5)")
    }

    /// The README's promise: serve on the embedded default, send with smtplib, find the
    /// message in var/mail and the decision in the log, verify the chain, break it.
    @Test func serveDefaultDeliversToMaildirAndLogVerifies() async throws {
        let dir = NSTemporaryDirectory() + "mg-serve-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // The embedded default listens on 127.0.0.1:2525; use a config that differs only in the port.
        let port = try FaultTests.freePort()
        try "listeners:\n  - bind: [\"127.0.0.1:\(port)\"]\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let p = try await Self.serve(dir: dir, port: port)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let r = try await Client.smtplib(port: port, from: "a@example.net", to: ["postmaster@localhost"],
                                         data: "Subject: hello\r\nMessage-ID: <cli@example.net>\r\n\r\nHi.\r\n")
        #expect(r["ok"] as? Bool == true, "\(r)")
        // SIGHUP reloads the policy (here the built-in one) and must not kill it.
        kill(p.processIdentifier, SIGHUP)
        try await Task.sleep(for: .milliseconds(300))
        #expect(p.isRunning)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/var/mail/new")
        #expect(files.count == 1)
        let mail = try String(contentsOfFile: dir + "/var/mail/new/" + files[0], encoding: .utf8)
        #expect(mail.hasPrefix("Return-Path: <a@example.net>\r\nReceived: from client.example.org ([127.0.0.1])\r\n"))
        #expect(mail.hasSuffix("Subject: hello\r\nMessage-ID: <cli@example.net>\r\n\r\nHi.\r\n"))
        let (qs, q) = try await run(["log", "query", "--event", "transaction", "--format", "json", "var/decisions.log"], cwd: dir)
        #expect(qs == 0)
        #expect(q.contains("\"message_id\":\"<cli@example.net>\""))
        #expect(q.contains("\"action\":\"accept\""))
        let (_, h) = try await run(["log", "query", "--event", "policy.reload", "--format", "json", "var/decisions.log"], cwd: dir)
        #expect(h.contains("\"trigger\":\"sighup\",\"result\":\"ok\",\"listener\":\"smtp\",\"policy\":\"builtin\""), "\(h)")
        let (vs, v) = try await run(["log", "verify", "var/decisions.log"], cwd: dir)
        #expect(vs == 0, "\(v)")
        #expect(v.hasPrefix("var/decisions.log: OK, "))
        // One byte changed: verification fails.
        var data = try Data(contentsOf: URL(fileURLWithPath: dir + "/var/decisions.log"))
        let i = try #require(data.firstRange(of: Data("cli@example.net".utf8)))
        data[i.lowerBound] = UInt8(ascii: "k")
        try data.write(to: URL(fileURLWithPath: dir + "/var/decisions.log"))
        let (bs, b) = try await run(["log", "verify", "var/decisions.log"], cwd: dir)
        #expect(bs == 1)
        #expect(b.hasPrefix("FAIL var/decisions.log:"))
    }
}

/// Reads back what `mailgate user` wrote, through the gateway's own reader.
enum PasswdFileReader {
    struct Read { var alice: String?; var addresses: [String] }
    static func load(_ path: String) throws -> Read {
        let f = try PasswdFile.load(path: path)
        return Read(alice: f.entry(for: "ALICE")?.hash, addresses: f.entry(for: "alice")?.addresses ?? [])
    }
    static func verify(_ pw: String, _ hash: String) -> Bool { PasswordHash.verify(pw, hash: hash) }
}

extension CLITests {
    /// `log verify` reads a rotated set as one chain: OK whole, and exit 1 with one line
    /// naming the gap when a file between is removed.
    @Test func logVerifyFindsAFileMissingFromARotatedSet() async throws {
        let dir = NSTemporaryDirectory() + "mg-rot-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/decisions.log"
        let log = try DecisionLog(path: path, durability: .groupCommit(milliseconds: 1), rotation: LogRotation(maxOctets: 1000))
        for batch in 0..<8 {
            for i in 0..<5 { log.append(LogRecord(event: "test", session: "s\(batch)", fields: [("n", .int(i))])) }
            try await log.flush()
        }
        log.close()
        let rotated = LogFileSet.rotated(of: path)
        #expect(rotated.count >= 3)
        let (ok, said) = try await run(["log", "verify", path])
        #expect(ok == 0)
        #expect(said == "\(path): OK, \(40 + rotated.count) records in \(rotated.count + 1) files, chain intact (last seq \(40 + rotated.count))\n")
        try FileManager.default.removeItem(atPath: rotated[1])
        let (bad, out) = try await run(["log", "verify", path])
        #expect(bad == 1)
        #expect(out.hasPrefix("FAIL \(rotated[2]):1: record ") && out.contains("does not continue \(rotated[0])"), "\(out)")
        #expect(out.split(separator: "\n").count == 1)
    }
}
