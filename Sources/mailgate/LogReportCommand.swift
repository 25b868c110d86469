import ArgumentParser
import Foundation
import DecisionLog

extension Log {
    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count what was accepted, refused and deferred: by stage, check, rule, reply code and time; the clients, HELO names, senders and recipients most refused; the policies in force.")
        @Option(help: "From this time on (RFC 3339 prefix, e.g. 2026-11-25).") var since: String?
        @Option(help: "Before this time.") var until: String?
        @Option(help: "Time buckets: hour or day.") var by = "day"
        @Option(help: "Rows in each top-N table.") var top = 10
        @Option(help: "Also write the report as one self-contained HTML page with charts.") var html: String?
        @Argument(help: "Log files (each with the files rotated from it).") var files: [String] = ["var/decisions.log"]

        func run() throws {
            guard let bucket = LogReport.Bucket(rawValue: by) else { throw ValidationError("--by is hour or day") }
            guard top > 0 && top <= 1000 else { throw ValidationError("--top is 1 to 1000") }
            var report = LogReport(bucket: bucket)
            var filter = LogFilter()
            filter.since = since
            filter.until = until
            let progress = isatty(2) == 1
            do {
                for f in files {
                    try filter.scan(path: f, skip: { line in
                        guard LogReport.canSkip(line) else { return false }
                        report.addSkipped()
                        return true
                    }) { r, _ in
                        report.add(r)
                        if progress && report.records % 100_000 == 0 {
                            FileHandle.standardError.write(Data("\rmailgate: \(report.records) records read…".utf8))
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
