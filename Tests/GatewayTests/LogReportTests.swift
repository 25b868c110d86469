import Foundation
import Testing
@testable import Gateway
import DecisionLog

/// `mailgate log report`: the same counts in the terminal and in the HTML page, whose charts
/// a real headless browser draws.
@Suite struct LogReportTests {
    /// Three accepted messages, three refusals (two relay, one deferred HELO rule given at
    /// RCPT), two deferrals (greylisting, a connection over the limit), and verdicts that
    /// must not count (a check that let the mail go on, monitor mode, the deferral itself).
    static func writeLog(_ path: String) async throws {
        let log = try DecisionLog(path: path, durability: .groupCommit(milliseconds: 1))
        func rec(_ event: String, _ s: String, _ f: [(String, JSONValue)]) { log.append(LogRecord(event: event, session: s, fields: f)) }
        let policy: [(String, JSONValue)] = [("policy", "default"), ("policy_version", "abc123")]
        for i in 1...3 {
            let s = "s\(i)", ip: JSONValue = .string("198.51.100.\(i)")
            let open: [(String, JSONValue)] = [("client", ip), ("port", 4000)]
            rec("session.open", s, open + policy)
            rec("verdict", s, [("client", ip), ("stage", "helo"), ("check", "helo"), ("result", "pass"), ("action", "continue"), ("helo", .string("mx\(i).example.net"))] + policy)
            rec("transaction", s, [("client", ip), ("transaction", .string("\(s).1")), ("sender", "a@example.net"), ("recipients", .array(["b@example.org"])),
                                   ("action", "accept"), ("reply", "250 2.0.0 OK"), ("downstream", .object([("target", "t"), ("result", "delivered"), ("reply", "250 ok")]))] + policy)
            rec("session.close", s, [("client", ip), ("reason", "quit")])
        }
        rec("session.open", "r1", [("client", "203.0.113.9")] + policy)
        rec("verdict", "r1", [("client", "203.0.113.9"), ("stage", "helo"), ("check", "helo"), ("result", "pass"), ("action", "continue"), ("helo", "Spam.Example")] + policy)
        for rcpt: String in ["x@remote.example", "y@remote.example"] {
            rec("verdict", "r1", [("client", "203.0.113.9"), ("stage", "rcpt"), ("check", "relay"), ("result", "denied"), ("action", "reject"),
                                  ("reply", .string("550 5.7.1 <\(rcpt)>: Relay access denied")), ("sender", "a@spam.example"), ("recipient", .string(rcpt))] + policy)
        }
        rec("verdict", "r1", [("client", "203.0.113.9"), ("stage", "rcpt"), ("check", "dnsbl"), ("result", "listed"), ("action", "log"),
                              ("monitor", true), ("would", "reject"), ("reply", "554 5.7.1 listed")] + policy)
        rec("verdict", "r2", [("client", "192.0.2.7"), ("stage", "helo"), ("check", "policy"), ("rule", "helo-literal"), ("result", "match"),
                              ("action", "reject"), ("reply", "550 5.7.1 use your name"), ("deferred_to", "rcpt"), ("helo", "[192.0.2.7]")] + policy)
        rec("verdict", "r2", [("client", "192.0.2.7"), ("stage", "rcpt"), ("check", "policy"), ("rule", "helo-literal"), ("result", "deferred"),
                              ("action", "reject"), ("reply", "550 5.7.1 use your name"), ("recipient", "b@example.org")] + policy)
        rec("verdict", "g1", [("client", "2001:db8:5::1"), ("stage", "rcpt"), ("check", "greylist"), ("rule", "greylist"), ("result", "greylisted"),
                              ("action", "tempfail"), ("reply", "451 4.7.1 Greylisted"), ("recipient", "b@example.org")] + policy)
        rec("session.refused", "l1", [("client", "192.0.2.8"), ("stage", "connect"), ("check", "limits"), ("action", "tempfail"), ("reply", "421 4.7.0 Too many connections")])
        try await log.flush()
        log.close()
    }

    @Test func theTerminalAndThePageAgreeAndTheBrowserDrawsTheCharts() async throws {
        let dir = NSTemporaryDirectory() + "mg-report-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/decisions.log"
        try await Self.writeLog(path)
        let (status, out) = try await runProgram(CLITests.binary, ["log", "report", "--by", "hour", "--html", dir + "/report.html", path])
        #expect(status == 0, "\(out)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.contains("  total         3        3         2"), "\(out)")
        // The whole of the refusal tables, exactly.
        let reasons = ["Refused and deferred by stage/check/rule", "  reason                    refused  deferred",
                       "  rcpt/relay                      2         0", "  connect/limits                  0         1",
                       "  rcpt/greylist/greylist          0         1", "  rcpt/policy/helo-literal        1         0",
                       "Reply codes", "  reply      count", "  550 5.7.1      3", "  421 4.7.0      1", "  451 4.7.1      1"]
        let at = try #require(lines.firstIndex(of: reasons[0]))
        #expect(Array(lines[at..<(at + reasons.count)]) == reasons, "\(out)")
        for l in ["  203.0.113.0/24       2", "  2001:db8:5::/48      1", "  192.0.2.0/24         2", "  spam.example      2", "  [192.0.2.7]       1",
                  "  b@example.org         2", "  default abc123         4"] {
            #expect(lines.contains(l), "\(l)")
        }
        // Neither the monitor-mode verdict nor the HELO rule's deferral is counted, nor a check that let mail on.
        #expect(lines.first?.hasSuffix(", 21 records, 4 sessions") == true)

        let page = try String(contentsOfFile: dir + "/report.html", encoding: .utf8)
        // Nothing is fetched from anywhere: no script, no link, no external source.
        for banned in ["<script", "<link", "src=", "http://", "https://", "@import", "url("] where banned != "http://" {
            #expect(!page.contains(banned), "\(banned)")
        }
        #expect(!page.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "").contains("http://"))
        func counts(_ cls: String, in svg: String) -> Int {
            let part = page.components(separatedBy: "<svg id=\"\(svg)\"").dropFirst().first?.components(separatedBy: "</svg>").first ?? ""
            return part.components(separatedBy: "<rect class=\"\(cls)\"").dropFirst().compactMap { r in
                r.components(separatedBy: "data-count=\"").dropFirst().first?.split(separator: "\"").first.flatMap { Int($0) }
            }.reduce(0, +)
        }
        #expect(counts("accepted", in: "timeseries") == 3 && counts("refused", in: "timeseries") == 3 && counts("deferred", in: "timeseries") == 2)
        #expect(counts("refused", in: "reasons") == 3 && counts("deferred", in: "reasons") == 2)
        for (name, n) in [("accepted", 3), ("refused", 3), ("deferred", 2)] {
            #expect(page.contains("id=\"total-\(name)\" data-count=\"\(n)\""))
        }

        // Debian's chromium, headless, draws it: a screenshot that is not one blank colour.
        let shot = dir + "/report.png"
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let browser = try #require(chromium, "chromium is missing: bin/setup installs it")
        let (rc, said) = try await runProgram(browser, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(dir)/chromium",
                                                        "--window-size=1000,1100", "--screenshot=\(shot)", "file://\(dir)/report.html"])
        #expect(rc == 0, "\(said)")
        let png = try Data(contentsOf: URL(fileURLWithPath: shot))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        // Width and height from the IHDR chunk.
        let w = png[16..<20].reduce(0) { $0 << 8 | Int($1) }, h = png[20..<24].reduce(0) { $0 << 8 | Int($1) }
        #expect(w == 1000 && h == 1100)
        #expect(png.count > 20_000, "a page with charts compresses to more than a blank one: \(png.count) octets")
        if let keep = ProcessInfo.processInfo.environment["MAILGATE_KEEP_REPORT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: shot, toPath: keep)
        }
    }
}
