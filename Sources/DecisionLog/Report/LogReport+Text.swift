/// The report as terminal tables.
extension LogReport {
    public func text(top n: Int = 10) -> String {
        var out = "Decision log report: \(firstTime ?? "-") to \(lastTime ?? "-"), \(records) records, \(sessions) sessions\n\n"
        out += Self.table(["", "accepted", "refused", "deferred"], [["total", "\(totals.accepted)", "\(totals.refused)", "\(totals.deferred)"]])
        let byReason = reasons.sorted { ($0.value.refused + $0.value.deferred, $1.key) > ($1.value.refused + $1.value.deferred, $0.key) }
        out += section("Refused and deferred by stage/check/rule", ["reason", "refused", "deferred"],
                       byReason.map { [$0.key, "\($0.value.refused)", "\($0.value.deferred)"] })
        out += section("Reply codes", ["reply", "count"], Self.sorted(replyCodes).map { [$0.0, "\($0.1)"] })
        out += section("By \(bucket.rawValue)", [bucket.rawValue, "accepted", "refused", "deferred"],
                       timeline.map { [$0.0, "\($0.1.accepted)", "\($0.1.refused)", "\($0.1.deferred)"] })
        for (title, counter) in [("Client networks most refused or deferred", clientNetworks), ("HELO names most refused or deferred", heloNames),
                                 ("Sender domains most refused or deferred", senderDomains), ("Recipients most refused or deferred", recipients)] {
            out += section(title, ["", "count"], counter.top(n).map { [$0.0, "\($0.1)"] })
        }
        out += section("Policies in force", ["policy version", "sessions"], Self.sorted(policies).map { [$0.0, "\($0.1)"] })
        return out
    }

    private func section(_ title: String, _ headers: [String], _ rows: [[String]]) -> String {
        "\n\(title)\n" + (rows.isEmpty ? "  (none)\n" : Self.table(headers, rows))
    }

    static func sorted(_ d: [String: Int]) -> [(String, Int)] {
        d.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Columns padded to their widest cell: the first left-aligned, the numbers right-aligned.
    static func table(_ headers: [String], _ rows: [[String]]) -> String {
        let all = [headers] + rows
        let widths = headers.indices.map { i in all.map { $0.indices.contains(i) ? $0[i].count : 0 }.max() ?? 0 }
        return all.map { row in
            "  " + row.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, (widths.indices.contains(i) ? widths[i] : 0) - cell.count))
                return i == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
