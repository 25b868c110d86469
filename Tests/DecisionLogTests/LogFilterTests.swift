import Foundation
import Testing
import DecisionLog
import SMTPProtocol

@Suite struct LogFilterTests {
    let rec: [String: Any] = [
        "seq": 7,
        "ts": "2026-11-25T10:15:30.250Z",
        "event": "verdict",
        "session": "s-42",
        "client": "192.0.2.10",
        "action": "reject",
        "stage": "rcpt",
        "check": "helo",
        "sender": "Alice@Example.NET",
        "recipients": ["bob@example.org", "Carol@Example.ORG"],
    ]

    func filter(_ f: (inout LogFilter) -> Void) -> LogFilter {
        var x = LogFilter()
        f(&x)
        return x
    }

    @Test func emptyFilterMatchesEverything() {
        #expect(LogFilter().matches(rec))
        #expect(LogFilter().matches([:]))
    }

    @Test func clientCIDR() {
        #expect(filter { $0.client = IPNetwork("192.0.2.0/24") }.matches(rec))
        #expect(filter { $0.client = IPNetwork("192.0.2.10") }.matches(rec))
        #expect(filter { $0.client = IPNetwork("192.0.*") }.matches(rec))
        #expect(!filter { $0.client = IPNetwork("192.0.3.0/24") }.matches(rec))
        #expect(!filter { $0.client = IPNetwork("192.0.2.11") }.matches(rec))
        #expect(!filter { $0.client = IPNetwork("2001:db8::/32") }.matches(rec))
        // Records without a (parsable) client never match a client filter.
        var noClient = rec
        noClient["client"] = nil
        #expect(!filter { $0.client = IPNetwork("0.0.0.0/0") }.matches(noClient))
        noClient["client"] = "not-an-ip"
        #expect(!filter { $0.client = IPNetwork("0.0.0.0/0") }.matches(noClient))
        // A mapped IPv6 client matches the IPv4 network.
        var mapped = rec
        mapped["client"] = "::ffff:192.0.2.10"
        #expect(filter { $0.client = IPNetwork("192.0.2.0/24") }.matches(mapped))
    }

    @Test func action() {
        #expect(filter { $0.action = "reject" }.matches(rec))
        #expect(!filter { $0.action = "accept" }.matches(rec))
        #expect(!filter { $0.action = "REJECT" }.matches(rec))
    }

    @Test func stage() {
        #expect(filter { $0.stage = "rcpt" }.matches(rec))
        #expect(!filter { $0.stage = "mail" }.matches(rec))
    }

    @Test func sessionEventCheck() {
        #expect(filter { $0.session = "s-42" }.matches(rec))
        #expect(!filter { $0.session = "s-4" }.matches(rec))
        #expect(filter { $0.event = "verdict" }.matches(rec))
        #expect(!filter { $0.event = "transaction" }.matches(rec))
        #expect(filter { $0.check = "helo" }.matches(rec))
        #expect(!filter { $0.check = "size" }.matches(rec))
    }

    @Test func senderIsCaseInsensitive() {
        #expect(filter { $0.sender = "alice@example.net" }.matches(rec))
        #expect(!filter { $0.sender = "alice@example.org" }.matches(rec))
    }

    @Test func recipientInRecipientsArray() {
        #expect(filter { $0.recipient = "bob@example.org" }.matches(rec))
        #expect(filter { $0.recipient = "carol@example.org" }.matches(rec))
        #expect(filter { $0.recipient = "BOB@EXAMPLE.ORG" }.matches(rec))
        #expect(!filter { $0.recipient = "dave@example.org" }.matches(rec))
        #expect(!filter { $0.recipient = "bob@example" }.matches(rec))
        // A single "recipient" field works too.
        let single: [String: Any] = ["recipient": "eve@example.org"]
        #expect(filter { $0.recipient = "eve@example.org" }.matches(single))
        #expect(!filter { $0.recipient = "bob@example.org" }.matches(single))
        #expect(!filter { $0.recipient = "bob@example.org" }.matches([:]))
    }

    @Test func sinceAndUntil() {
        #expect(filter { $0.since = "2026-11-25" }.matches(rec))
        #expect(filter { $0.since = "2026-11-25T10:15:30.250Z" }.matches(rec))  // inclusive
        #expect(!filter { $0.since = "2026-11-25T10:15:30.251Z" }.matches(rec))
        #expect(!filter { $0.since = "2026-11-26" }.matches(rec))
        #expect(filter { $0.until = "2026-11-26" }.matches(rec))
        #expect(filter { $0.until = "2026-11-25T10:15:30.251Z" }.matches(rec))
        #expect(!filter { $0.until = "2026-11-25T10:15:30.250Z" }.matches(rec))  // exclusive
        #expect(!filter { $0.until = "2026-11-25" }.matches(rec))
        #expect(filter { $0.since = "2026-11-25T10"; $0.until = "2026-11-25T11" }.matches(rec))
        #expect(!filter { $0.since = "2026-11-25T11"; $0.until = "2026-11-25T12" }.matches(rec))
    }

    @Test func everyGivenFilterMustMatch() {
        #expect(filter { $0.action = "reject"; $0.stage = "rcpt"; $0.client = IPNetwork("192.0.2.0/24") }.matches(rec))
        #expect(!filter { $0.action = "reject"; $0.stage = "mail"; $0.client = IPNetwork("192.0.2.0/24") }.matches(rec))
        #expect(!filter { $0.action = "reject"; $0.stage = "rcpt"; $0.client = IPNetwork("10.0.0.0/8") }.matches(rec))
    }

    @Test func filtersRecordsReadBackFromALog() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file()
        let log = try DecisionLog(path: path)
        log.append(LogRecord(event: "transaction", session: "a", fields: [
            ("client", "192.0.2.1"), ("action", "accept"), ("stage", "message"),
            ("recipients", .array(["x@example.org", "y@example.org"])),
        ]))
        log.append(LogRecord(event: "transaction", session: "b", fields: [
            ("client", "198.51.100.7"), ("action", "reject"), ("stage", "rcpt"),
            ("recipients", .array(["y@example.org"])),
        ]))
        log.append(LogRecord(event: "verdict", session: "c", fields: [
            ("client", "2001:db8::5"), ("action", "tempfail"), ("stage", "helo"), ("check", "helo"),
        ]))
        try await log.flush()
        log.close()

        func sessions(_ f: LogFilter) throws -> [String] {
            var out: [String] = []
            try LogReader.forEachRecord(path: path) { r, line in
                #expect(line.hasPrefix("{\"seq\":"))
                if f.matches(r) { out.append(r["session"] as? String ?? "?") }
            }
            return out
        }
        #expect(try sessions(LogFilter()) == ["a", "b", "c"])
        #expect(try sessions(filter { $0.recipient = "y@example.org" }) == ["a", "b"])
        #expect(try sessions(filter { $0.recipient = "x@example.org" }) == ["a"])
        #expect(try sessions(filter { $0.client = IPNetwork("192.0.2.0/24") }) == ["a"])
        #expect(try sessions(filter { $0.client = IPNetwork("2001:db8::/32") }) == ["c"])
        #expect(try sessions(filter { $0.action = "reject" }) == ["b"])
        #expect(try sessions(filter { $0.stage = "helo" }) == ["c"])
        #expect(try sessions(filter { $0.since = "2000-01-01"; $0.until = "2999-01-01" }) == ["a", "b", "c"])
        #expect(try sessions(filter { $0.until = "2000-01-01" }) == [])
    }
}
