/// The report as one self-contained HTML page: inline CSS and SVG charts, no script, font
/// or image fetched from anywhere, readable offline.
extension LogReport {
    static let colours = (accepted: "#2e7d32", refused: "#c62828", deferred: "#f9a825")

    public func html(top n: Int = 10) -> String {
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>MailGate decision log report</title>
        <style>
        body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
        h1{font-size:20px}h2{font-size:16px;margin-top:28px}
        .cards{display:flex;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:140px}
        .card b{display:block;font-size:24px}
        table{border-collapse:collapse;margin:6px 0}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}
        td.n{text-align:right;font-variant-numeric:tabular-nums}
        .grid{display:grid;grid-template-columns:1fr 1fr;gap:0 24px}
        svg text{font:11px system-ui,sans-serif;fill:#444}
        </style></head><body>
        <h1>MailGate decision log report</h1>
        <p>\(Self.escape(firstTime ?? "-")) to \(Self.escape(lastTime ?? "-")): \(records) records, \(sessions) sessions.</p>
        <div class="cards">
        """
        for (name, value, colour) in [("accepted", totals.accepted, Self.colours.accepted), ("refused", totals.refused, Self.colours.refused),
                                      ("deferred", totals.deferred, Self.colours.deferred)] {
            h += "<div class=\"card\" id=\"total-\(name)\" data-count=\"\(value)\" style=\"border-left:6px solid \(colour)\">\(name)<b>\(value)</b></div>\n"
        }
        h += "</div>\n<h2>By \(bucket.rawValue)</h2>\n" + timeSeriesSVG()
        h += "<h2>Refused and deferred by stage/check/rule</h2>\n" + reasonsSVG(top: 12)
        h += "<div class=\"grid\">\n"
        h += Self.htmlTable("Reply codes", Self.sorted(replyCodes).prefix(n).map { ($0.0, $0.1) })
        h += Self.htmlTable("Policies in force (sessions)", Self.sorted(policies).prefix(n).map { ($0.0, $0.1) })
        for (title, c) in [("Client networks most refused or deferred", clientNetworks), ("HELO names most refused or deferred", heloNames),
                           ("Sender domains most refused or deferred", senderDomains), ("Recipients most refused or deferred", recipients)] {
            h += Self.htmlTable(title, c.top(n))
        }
        return h + "</div>\n</body></html>\n"
    }

    /// Stacked bars, one per time bucket: accepted at the bottom, deferred, refused on top.
    func timeSeriesSVG() -> String {
        let points = timeline
        let w = 960.0, plot = 220.0, left = 50.0
        let maxTotal = max(1, points.map { $0.1.total }.max() ?? 1)
        let step = (w - left) / Double(max(1, points.count))
        var s = "<svg id=\"timeseries\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(plot + 40))\" role=\"img\">\n"
        s += "<text x=\"0\" y=\"12\">\(maxTotal)</text><text x=\"0\" y=\"\(Int(plot))\">0</text>\n"
        s += "<line x1=\"\(left)\" y1=\"\(plot)\" x2=\"\(w)\" y2=\"\(plot)\" stroke=\"#999\"/>\n"
        for (i, (key, c)) in points.enumerated() {
            var y = plot
            let x = left + Double(i) * step
            for (cls, v, colour) in [("accepted", c.accepted, Self.colours.accepted), ("deferred", c.deferred, Self.colours.deferred),
                                     ("refused", c.refused, Self.colours.refused)] where v > 0 {
                let bh = plot * Double(v) / Double(maxTotal)
                y -= bh
                s += "<rect class=\"\(cls)\" data-bucket=\"\(Self.escape(key))\" data-count=\"\(v)\" x=\"\(Self.f(x))\" y=\"\(Self.f(y))\" width=\"\(Self.f(max(1, step * 0.85)))\" height=\"\(Self.f(bh))\" fill=\"\(colour)\"><title>\(Self.escape(key)): \(v) \(cls)</title></rect>\n"
            }
        }
        for i in Set([0, points.count / 2, max(0, points.count - 1)]).sorted() where i < points.count {
            s += "<text x=\"\(Self.f(left + Double(i) * step))\" y=\"\(Int(plot + 16))\">\(Self.escape(points[i].0))</text>\n"
        }
        let legend = [("accepted", Self.colours.accepted), ("deferred", Self.colours.deferred), ("refused", Self.colours.refused)]
        for (i, (name, colour)) in legend.enumerated() {
            s += "<rect x=\"\(Int(left) + i * 110)\" y=\"\(Int(plot + 26))\" width=\"10\" height=\"10\" fill=\"\(colour)\"/><text x=\"\(Int(left) + i * 110 + 14)\" y=\"\(Int(plot + 35))\">\(name)</text>\n"
        }
        return s + "</svg>\n"
    }

    /// Horizontal bars for the reasons most refused or deferred.
    func reasonsSVG(top n: Int) -> String {
        let rows = reasons.sorted { ($0.value.total, $1.key) > ($1.value.total, $0.key) }.prefix(n)
        let label = 260.0, w = 960.0, row = 22.0
        let maxTotal = max(1, rows.map { $0.value.total }.max() ?? 1)
        var s = "<svg id=\"reasons\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(row * Double(rows.count) + 10))\" role=\"img\">\n"
        for (i, (reason, c)) in rows.enumerated() {
            let y = Double(i) * row
            var x = label
            s += "<text x=\"0\" y=\"\(Self.f(y + 15))\">\(Self.escape(reason))</text>\n"
            for (cls, v, colour) in [("refused", c.refused, Self.colours.refused), ("deferred", c.deferred, Self.colours.deferred)] where v > 0 {
                let bw = (w - label - 80) * Double(v) / Double(maxTotal)
                s += "<rect class=\"\(cls)\" data-reason=\"\(Self.escape(reason))\" data-count=\"\(v)\" x=\"\(Self.f(x))\" y=\"\(Self.f(y + 3))\" width=\"\(Self.f(max(1, bw)))\" height=\"16\" fill=\"\(colour)\"><title>\(Self.escape(reason)): \(v) \(cls)</title></rect>\n"
                x += bw
            }
            s += "<text x=\"\(Self.f(x + 6))\" y=\"\(Self.f(y + 15))\">\(c.total)</text>\n"
        }
        return s + "</svg>\n"
    }

    static func htmlTable(_ title: String, _ rows: [(String, Int)]) -> String {
        var t = "<div><h2>\(escape(title))</h2><table>\n"
        if rows.isEmpty { t += "<tr><td>(none)</td></tr>\n" }
        for (k, v) in rows { t += "<tr><td>\(escape(k))</td><td class=\"n\">\(v)</td></tr>\n" }
        return t + "</table></div>\n"
    }

    static func f(_ v: Double) -> String { String(Double(Int(v * 10)) / 10) }

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
