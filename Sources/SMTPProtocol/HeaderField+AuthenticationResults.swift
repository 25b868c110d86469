extension HeaderField {
    /// One `Authentication-Results:` field for all of our checks' results (RFC 8601 §2.2),
    /// where the first of them stood.
    public static func mergingAuthenticationResults(_ headers: [HeaderField], authserv: String) -> [HeaderField] {
        let prefix = authserv + "; "
        func ours(_ h: HeaderField) -> Bool { h.name.lowercased() == "authentication-results" && h.value.hasPrefix(prefix) }
        let mine = headers.filter(ours)
        guard mine.count > 1 else { return headers }
        let merged = HeaderField("Authentication-Results", prefix + mine.map { String($0.value.dropFirst(prefix.count)) }.joined(separator: ";\r\n\t"))
        var out: [HeaderField] = []
        var placed = false
        for h in headers {
            if ours(h) {
                if !placed { out.append(merged); placed = true }
            } else {
                out.append(h)
            }
        }
        return out
    }
}
