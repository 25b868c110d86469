extension SMTPReply {
    /// A 4xx or 5xx reply with ` [id REF]` after the text of its last line, so that a bounce
    /// names the log's session; other replies, and a line that would pass RFC 5321's 512
    /// octets (4.5.3.1.5), stay as they are.
    public func referencing(_ ref: String) -> SMTPReply {
        guard code >= 400, let last = lines.last else { return self }
        let tag = last.isEmpty ? "[id \(ref)]" : " [id \(ref)]"
        let rendered = 4 + (enhanced.map { $0.utf8.count + 1 } ?? 0) + last.utf8.count
        guard rendered + tag.utf8.count + 2 <= 512 else { return self }
        var r = self
        r.lines[r.lines.count - 1] = last + tag
        return r
    }
}
