import ArgumentParser
import Foundation
import DecisionLog
import LogSink

extension Log {
    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count what was accepted, refused and deferred: by stage, check, rule, reply code and time; the clients, HELO names, senders and recipients most refused; the policies in force.")
        @Option(help: "From this time on (RFC 3339 prefix, e.g. 2026-11-25).") var since: String?
        @Option(help: "Before this time.") var until: String?
        @Option(help: "Time buckets: hour or day.") var by = "day"
        @Option(help: "Rows in each top-N table.") var top = 10
        @Option(help: "Also write the report as one self-contained HTML page with charts.") var html: String?
        @Option(help: "Read the shared PostgreSQL sink (every gateway) instead of files.") var postgres: String?
        @Argument(help: "Log files (each with the files rotated from it).") var files: [String] = ["var/decisions.log"]

        func run() async throws {
            guard let bucket = LogReport.Bucket(rawValue: by) else { throw ValidationError("--by is hour or day") }
            guard top > 0 && top <= 1000 else { throw ValidationError("--top is 1 to 1000") }
            var report = LogReport(bucket: bucket)
            var filter = LogFilter()
            filter.since = since
            filter.until = until
            let progress = isatty(2) == 1
            @Sendable func tell(_ n: Int) {
                if progress && n % 100_000 == 0 { FileHandle.standardError.write(Data("\rmailgate: \(n) records read…".utf8)) }
            }
            do {
                if let postgres {
                    report = try await PostgresLogSource.with(url: postgres) { [report, filter] src in
                        var report = report
                        let match = filter.matcher()
                        try await src.lines(since: filter.since, until: filter.until) { text in
                            let line = Array(text.utf8)[...]
                            if !report.addWithoutParsing(line) { for r in match(line) { report.add(r) } }
                            tell(report.records)
                        }
                        return report
                    }
                } else {
                    for f in files {
                        try filter.scan(path: f, skip: { report.addWithoutParsing($0) }) { r, _ in
                            report.add(r)
                            tell(report.records)
                        }
                    }
                }
            } catch { throw CLIError.failed(error) }
            if progress && report.records >= 100_000 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            print(report.text(top: top), terminator: "")
            if let html {
                do { try Data(report.html(top: top).utf8).write(to: URL(fileURLWithPath: html)) } catch {
                    FileHandle.standardError.write(Data("mailgate: cannot write \(html): \(String(describing: (error as NSError).localizedFailureReason ?? error.localizedDescription))\n".utf8))
                    throw ExitCode(2)
                }
            }
        }
    }
}
