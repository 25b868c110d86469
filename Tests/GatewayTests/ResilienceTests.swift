import Foundation
import Testing
import NIOCore
import NIOPosix
import DecisionLog
import SMTPProtocol
@testable import Gateway

/// Failures downstream, hostile clients, limits, shutdown: each with the exact reply the
/// client gets and the record the log keeps.
@Suite struct ResilienceTests {
    static let msg = "Subject: t\r\nMessage-ID: <r@example.net>\r\n\r\nbody\r\n"

    /// A port that refuses connections: bound (so no other test can take it) but not
    /// listening. Close the descriptor when done.
    static func deadPort() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw POSIXError(.EADDRINUSE) }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    func transaction(_ gw: TestGateway) async throws -> [String: Any] {
        let records = try await gw.records(waitingFor: "transaction")
        return try #require(records.first { $0["event"] as? String == "transaction" })
    }

    @Test func downstreamDownGives451() async throws {
        let (fd, port) = try Self.deadPort()
        defer { close(fd) }
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r["code"] as? Int == 451)
        #expect(r["text"] as? String == "4.4.1 Downstream server unavailable, try again later")
        let t = try await transaction(gw)
        #expect(t["action"] as? String == "tempfail")
        let ds = try #require(t["downstream"] as? [String: Any])
        #expect(ds["result"] as? String == "tempfailed")
        #expect((ds["reply"] as? String)?.hasPrefix("connect failed") == true)
        await gw.stop()
    }

    @Test func downstream550PassesThrough() async throws {
        let down = try await RecordingDownstream.start(.rejectData("550 5.7.1 Content refused by policy"))
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r["code"] as? Int == 550)
        #expect(r["text"] as? String == "5.7.1 Content refused by policy")
        let t = try await transaction(gw)
        #expect(t["action"] as? String == "reject")
        #expect(t["reply"] as? String == "550 5.7.1 Content refused by policy")
        await gw.stop()
        down.stop()
    }

    @Test func downstreamRcpt4xxGives4xx() async throws {
        let down = try await RecordingDownstream.start(.rejectRcpt("450 4.2.0 Mailbox busy"))
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r["code"] as? Int == 451)
        #expect(r["text"] as? String == "4.3.0 Downstream refused 1 of 1 recipients (450 4.2.0 Mailbox busy); try again later")
        #expect(down.messages.isEmpty)
        await gw.stop()
        down.stop()
    }

    /// Without verification, a recipient the downstream refuses next to good ones means the
    /// whole message is tempfailed: nothing is delivered, nothing lost.
    @Test func mixedDownstreamRecipientResultsTempfailTheMessage() async throws {
        let down = try await RecordingDownstream.start(.rejectRcptFor("nobody@example.org", "550 5.1.1 No such user"))
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org", "nobody@example.org"], data: Self.msg)
        #expect(r["code"] as? Int == 451)
        #expect(r["text"] as? String == "4.3.0 Downstream refused 1 of 2 recipients (550 5.1.1 No such user); try again later")
        #expect(down.messages.isEmpty)
        await gw.stop()
        down.stop()
    }

    /// With downstream.verifyRecipients, the refusal reaches the client at RCPT and the
    /// message goes to the others.
    @Test func verifiedRecipientsAreRefusedAtRCPT() async throws {
        let down = try await RecordingDownstream.start(.rejectRcptFor("nobody@example.org", "550 5.1.1 No such user"))
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.downstream.verifyRecipients = true }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\n", 2),
            ("RCPT TO:<b@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<postmaster>\r\nDATA\r\n", 4),
            ("Subject: x\r\n\r\nx\r\n.\r\n", 1),
        ])
        #expect(d.replies[1] == ["250 2.1.5 Recipient <b@example.org> OK", "550 5.1.1 No such user",
                                 "250 2.1.5 Recipient <postmaster> OK", "354 End data with <CR><LF>.<CR><LF>"])
        #expect(d.replies[2] == ["250 2.0.0 Ok: queued as TEST1"])
        #expect(down.messages.map(\.rcpts) == [["b@example.org", "postmaster"]])
        // Verification reuses the pooled connection.
        #expect(down.connections == 1)
        let records = try await gw.records()
        let v = try #require(records.first { $0["check"] as? String == "downstream" })
        #expect(v["stage"] as? String == "rcpt")
        #expect(v["action"] as? String == "reject")
        #expect(v["recipient"] as? String == "nobody@example.org")
        #expect(v["reply"] as? String == "550 5.1.1 No such user")
        await gw.stop()
        down.stop()
    }

    @Test func downstreamRcpt5xxForAllGives5xx() async throws {
        let down = try await RecordingDownstream.start(.rejectRcpt("550 5.1.1 No such user"))
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r["code"] as? Int == 550)
        #expect(r["text"] as? String == "5.1.1 No such user")
        await gw.stop()
        down.stop()
    }

    /// After the final dot nothing is retried (RFC 1047): the outcome is unknown, the client
    /// hears 451 4.4.2, and the log says so.
    @Test func downstreamTimeoutGives451() async throws {
        let down = try await RecordingDownstream.start(.stallAfterDot)
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.downstream.dataTimeout = 1 }
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r["code"] as? Int == 451)
        #expect(r["text"] as? String == "4.4.2 Downstream connection lost after end of data; the message may have been delivered, try again later")
        let t = try await transaction(gw)
        let ds = try #require(t["downstream"] as? [String: Any])
        #expect(ds["result"] as? String == "unknown")
        #expect(ds["reply"] as? String == "after end of data: timeout waiting for end of data; delivery status unknown, not resent")
        await gw.stop()
        down.stop()
    }

    @Test func downstreamDropMidTransferGives451() async throws {
        let down = try await RecordingDownstream.start(.dropDuringData)
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        // A small message goes out with its dot in one write: whether the dot arrived cannot
        // be known, so the gateway does not send it again.
        #expect(r["code"] as? Int == 451)
        #expect(r["text"] as? String == "4.4.2 Downstream connection lost after end of data; the message may have been delivered, try again later")
        await gw.stop()
        down.stop()
    }

    @Test func downstream421GreetingFailsOver() async throws {
        let busy = try await RecordingDownstream.start(.greeting("421 4.3.2 busy"))
        let good = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(busy.port)", "smtp:127.0.0.1:\(good.port)"])
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r["ok"] as? Bool == true, "\(r)")
        #expect(good.messages.count == 1)
        #expect(gw.server.shared.forwarder.isDead("smtp:127.0.0.1:\(busy.port)"))
        // The dead host is skipped for the retry period: the next message goes straight on.
        let r2 = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r2["ok"] as? Bool == true)
        #expect(busy.connections == 1)
        #expect(good.messages.count == 2)
        let t = try await transaction(gw)
        #expect((t["downstream"] as? [String: Any])?["target"] as? String == "smtp:127.0.0.1:\(good.port)")
        await gw.stop()
        busy.stop()
        good.stop()
    }

    @Test func allDownstreamsDeadStillTriesOne() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        gw.server.shared.forwarder.markDead("smtp:127.0.0.1:\(down.port)")
        let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
        #expect(r["ok"] as? Bool == true, "\(r)")
        #expect(down.messages.count == 1)
        await gw.stop()
        down.stop()
    }

    @Test func pooledConnectionIsReused() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        for _ in 0..<3 {
            let r = try await Client.smtplib(port: gw.port, from: "a@example.net", to: ["b@example.org"], data: Self.msg)
            #expect(r["ok"] as? Bool == true)
        }
        #expect(down.messages.count == 3)
        #expect(down.connections == 1)
        await gw.stop()
        down.stop()
    }

    @Test func connectionLimitPerIP() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].connectionLimitPerIP = 1 }
        // Hold one session open (a raw socket that only reads the greeting), then try another.
        let holder = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: gw.port).get()
        for _ in 0..<100 where gw.server.activeSessions < 1 { try await Task.sleep(for: .milliseconds(10)) }
        let d = try await Client.raw(port: gw.port, [])
        #expect(d.greeting == "421 4.7.0 Too many connections, try again later")
        #expect(d.closed)
        let records = try await gw.records(waitingFor: "session.refused")
        let refused = try #require(records.first { $0["event"] as? String == "session.refused" })
        #expect(refused["reason"] as? String == "connectionLimitPerIP 1 reached for 127.0.0.1")
        #expect(refused["action"] as? String == "tempfail")
        #expect(refused["client"] as? String == "127.0.0.1")
        try await holder.close()
        await gw.stop()
    }

    @Test func connectionLimitTotal() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].connectionLimit = 1 }
        let holder = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: gw.port).get()
        for _ in 0..<100 where gw.server.activeSessions < 1 { try await Task.sleep(for: .milliseconds(10)) }
        let d = try await Client.raw(port: gw.port, [])
        #expect(d.greeting == "421 4.7.0 Too many connections, try again later")
        try await holder.close()
        await gw.stop()
    }

    @Test func pipelinedSessionGetsRepliesInOrder() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n", 5),
            ("Subject: pipelined\r\n\r\nhi\r\n.\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n", 4),
            ("Subject: second\r\n\r\nho\r\n.\r\nQUIT\r\n", 2),
        ])
        #expect(d.replies[1] == ["250 2.1.0 Sender <a@example.net> OK", "250 2.1.5 Recipient <b@example.org> OK",
                                 "250 2.1.5 Recipient <nobody@example.org> OK", "250 2.1.5 Recipient <c@example.org> OK",
                                 "354 End data with <CR><LF>.<CR><LF>"])
        #expect(d.replies[2] == ["250 2.0.0 Ok: queued as TEST1", "250 2.1.0 Sender <x@example.net> OK",
                                 "250 2.1.5 Recipient <y@example.org> OK", "354 End data with <CR><LF>.<CR><LF>"])
        #expect(d.replies[3] == ["250 2.0.0 Ok: queued as TEST2", "221 2.0.0 gw.test closing connection"])
        #expect(down.messages.map(\.rcpts) == [["b@example.org", "nobody@example.org", "c@example.org"], ["y@example.org"]])
        await gw.stop()
        down.stop()
    }

    @Test func swaksPipelining() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/swaks") else {
            Issue.record("swaks is not installed: run bin/setup")
            return
        }
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let port = gw.port
        let out = try await runProgram("/usr/bin/swaks", [
            "--server", "127.0.0.1:\(port)", "--pipeline", "--helo", "swaks.example.org",
            "--from", "a@example.net", "--to", "b@example.org,c@example.org",
            "--header", "Subject: swaks", "--body", "hello from swaks", "--timeout", "20"]).output
        #expect(out.contains("<-  250 2.1.5 Recipient <c@example.org> OK"), "\(out)")
        #expect(out.contains("<-  250 2.0.0 Ok: queued as TEST1"), "\(out)")
        #expect(down.messages.first?.rcpts == ["b@example.org", "c@example.org"])
        await gw.stop()
        down.stop()
    }

    @Test(arguments: [
        ("bare LF line ending", "Subject: x\r\n\r\nline one\nline two\r\n", "550 5.6.0 Message refused: bare LF in message text (RFC 5321 2.3.8)"),
        ("smuggled end <LF>.<LF>", "Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nsmuggled\r\n", "550 5.6.0 Message refused: bare LF in message text (RFC 5321 2.3.8)"),
        ("smuggled end <CR><LF>.<LF>", "Subject: x\r\n\r\nhello\r\n.\nMAIL FROM:<evil@example.net>\r\n", "550 5.6.0 Message refused: bare LF in message text (RFC 5321 2.3.8)"),
        ("bare CR", "Subject: x\r\n\r\nhello\rworld\r\n", "550 5.6.0 Message refused: bare CR in message text (RFC 5321 2.3.8)"),
        ("NUL", "Subject: x\r\n\r\nhel\u{0}lo\r\n", "550 5.6.0 Message refused: NUL octet in message text"),
    ])
    func smugglingAndBadLineEndingsAreRefused(name: String, body: String, reply: String) async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            (body + ".\r\n", 1),
            ("NOOP\r\n", 1),
        ])
        #expect(d.replies[1] == [reply], "\(name)")
        #expect(d.replies[2] == ["250 2.0.0 OK"], "\(name): the session must stay in step")
        #expect(down.messages.isEmpty, "\(name): nothing may be forwarded")
        let records = try await gw.records()
        let v = try #require(records.first { $0["check"] as? String == "data" })
        #expect(v["action"] as? String == "reject")
        await gw.stop()
        down.stop()
    }

    @Test func tooManyRecipients() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in c.listeners[0].maxRecipients = 2 }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\n", 2),
            ("RCPT TO:<r1@example.org>\r\nRCPT TO:<r2@example.org>\r\nRCPT TO:<r3@example.org>\r\nDATA\r\n", 4),
            ("Subject: x\r\n\r\nx\r\n.\r\n", 1),
        ])
        #expect(d.replies[1] == ["250 2.1.5 Recipient <r1@example.org> OK", "250 2.1.5 Recipient <r2@example.org> OK",
                                 "452 4.5.3 Too many recipients", "354 End data with <CR><LF>.<CR><LF>"])
        #expect(down.messages.first?.rcpts == ["r1@example.org", "r2@example.org"])
        let records = try await gw.records()
        let v = try #require(records.first { $0["check"] as? String == "limits" })
        #expect(v["recipient"] as? String == "r3@example.org")
        #expect(v["action"] as? String == "tempfail")
        await gw.stop()
        down.stop()
    }

    @Test func tooManyUnrecognizedCommands() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].maxUnrecognizedCommands = 3 }
        let d = try await Client.raw(port: gw.port, (0..<4).map { ("FOO\($0)\r\n", 1) })
        #expect(d.replies.prefix(3).map { $0.first ?? "" } == Array(repeating: "500 5.5.2 Syntax error, command unrecognized", count: 3))
        #expect(d.replies[3] == ["421 4.7.0 Too many errors, closing connection"])
        #expect(d.closed)
        let records = try await gw.records(waitingFor: "session.close")
        #expect(records.last?["reason"] as? String == "too-many-errors")
        await gw.stop()
    }

    @Test func httpRequestIsDroppedAtOnce() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"])
        let d = try await Client.raw(port: gw.port, [("GET / HTTP/1.1\r\n", 1)])
        #expect(d.replies[0] == ["421 4.7.0 This is an SMTP server; closing connection"])
        #expect(d.closed)
        await gw.stop()
    }

    @Test func idleClientTimesOut() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in c.listeners[0].connectionTimeout = 1 }
        let d = try await Client.raw(port: gw.port, [("EHLO client.example.org\r\n", 1), (nil, 1)])
        #expect(d.replies[1] == ["421 4.4.2 Timeout exceeded, closing connection"])
        let records = try await gw.records(waitingFor: "session.close")
        #expect(records.last?["reason"] as? String == "timeout")
        await gw.stop()
    }

    /// Time the gateway spends waiting on the downstream is not the client's idle time.
    @Test func slowDownstreamDoesNotTimeOutTheClient() async throws {
        let down = try await RecordingDownstream.start(.stallAfterDot)
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"]) { c in
            c.listeners[0].connectionTimeout = 1
            c.downstream.dataTimeout = 3
        }
        let d = try await Client.raw(port: gw.port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", 4),
            ("Subject: slow\r\n\r\nbody\r\n.\r\n", 1),
            ("NOOP\r\n", 1),
        ])
        #expect(d.replies[1] == ["451 4.4.2 Downstream connection lost after end of data; the message may have been delivered, try again later"])
        #expect(d.replies[2] == ["250 2.0.0 OK"])
        await gw.stop()
        down.stop()
    }

    @Test func heloCheckRefusesBadNamesFromUnauthorizedClients() async throws {
        let gw = try await TestGateway(downstream: ["maildir:/nonexistent"]) { c in
            c.listeners[0].authorizedAddresses = []
            c.helo.literalMustMatchClient = true
        }
        let d = try await Client.raw(port: gw.port, [
            ("HELO localhost\r\n", 1),
            ("EHLO 192.0.2.1\r\n", 1),
            ("EHLO [192.0.2.1]\r\n", 1),
            ("MAIL FROM:<a@example.net>\r\n", 1),
            ("HELO [127.0.0.1]\r\n", 1),
            ("HELO mx.example.net\r\n", 1),
        ])
        #expect(d.replies.map { $0.first ?? "" } == [
            "504 5.5.2 Helo command rejected: need fully-qualified hostname",
            "501 5.5.2 Helo command rejected: Invalid name",
            "550 5.7.1 Helo command rejected: address literal does not match your address",
            "503 5.5.1 Send HELO/EHLO first",
            "250 gw.test Hello [127.0.0.1] [127.0.0.1]",
            "250 gw.test Hello mx.example.net [127.0.0.1]",
        ])
        let records = try await gw.records()
        let helo = records.filter { $0["check"] as? String == "helo" }
        #expect(helo.map { $0["result"] as? String ?? "" } == ["invalid", "invalid", "invalid", "pass", "pass"])
        #expect(helo.first?["reason"] as? String == "not a fully qualified domain name")
        await gw.stop()
    }

    @Test func shutdownSays421ToIdleSessionsAndFinishesTransactions() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        let port = gw.port
        // A client mid-transaction (MAIL given) and an idle one.
        async let busy = Client.raw(port: port, [
            ("EHLO client.example.org\r\nMAIL FROM:<a@example.net>\r\n", 2),
            (nil, 1),
        ], timeout: 10)
        async let idle = Client.raw(port: port, [("EHLO client.example.org\r\n", 1), (nil, 1)], timeout: 10)
        // Both clients connected and greeted (Python may start slowly on a loaded machine).
        for _ in 0..<1000 where gw.server.activeSessions < 2 { try await Task.sleep(for: .milliseconds(10)) }
        try #require(gw.server.activeSessions == 2)
        try await Task.sleep(for: .milliseconds(500))
        let stop = Task { await gw.server.shutdown(grace: .seconds(1)) }
        let i = try await idle
        #expect(i.replies[1] == ["421 4.3.2 Service shutting down, try again later"])
        let b = try await busy
        // The transaction in flight had the grace period; then it was told too.
        #expect(b.replies[1] == ["421 4.3.2 Service shutting down, try again later"])
        await stop.value
        gw.log.close()
        let records = try LogVerifier.verify(path: gw.logPath)
        #expect(records.ok)
        down.stop()
    }

    @Test func logChainVerifiesAndAOneByteEditFails() async throws {
        let down = try await RecordingDownstream.start()
        let gw = try await TestGateway(downstream: ["smtp:127.0.0.1:\(down.port)"])
        for i in 0..<3 {
            _ = try await Client.smtplib(port: gw.port, from: "a\(i)@example.net", to: ["b@example.org"], data: Self.msg)
        }
        await gw.stop()
        down.stop()
        let ok = try LogVerifier.verify(path: gw.logPath)
        #expect(ok.ok, "\(ok.problems)")
        // Three sessions of four records each (open, commit with the folded verdicts, transaction, close), and the gateway's own.
        #expect(ok.records >= 12)
        var data = try Data(contentsOf: URL(fileURLWithPath: gw.logPath))
        let idx = try #require(data.firstRange(of: Data("a1@example.net".utf8)))
        data[idx.lowerBound] = UInt8(ascii: "x")
        try data.write(to: URL(fileURLWithPath: gw.logPath))
        let bad = try LogVerifier.verify(path: gw.logPath)
        #expect(!bad.ok)
        #expect(bad.problems.first?.contains("does not chain to the record before") == true)
    }
}
