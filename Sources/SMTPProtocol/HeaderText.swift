/// Writing text that came from outside (an envelope address, a HELO name, a DNS answer)
/// into header fields we add, so that no parser downstream can read it as structure: a
/// quoted local part such as `"x;dkim=pass"@a.example` must not become a second result.
public enum HeaderText {
    /// RFC 5322 quoted-string: `"` and `\` escaped, CR, LF and other controls dropped.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            if u.value < 0x20 || u.value == 0x7f { continue }
            if u == "\"" || u == "\\" { out.append("\\") }
            out.unicodeScalars.append(u)
        }
        return out + "\""
    }

    /// Text for inside a comment: parentheses and `\` escaped, controls dropped.
    public static func comment(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if u.value < 0x20 || u.value == 0x7f { continue }
            if u == "(" || u == ")" || u == "\\" { out.append("\\") }
            out.unicodeScalars.append(u)
        }
        return out
    }

    /// An RFC 8601 §2.2 pvalue: the value as it is when it is a token or a plain
    /// `local@domain` whose parts are dot-atoms; a quoted-string otherwise.
    public static func pvalue(_ s: String) -> String {
        if isToken(s) { return s }
        if let at = s.lastIndex(of: "@") {
            let local = s[..<at], domain = s[s.index(after: at)...]
            if (local.isEmpty || isDotAtom(local)) && isDotAtom(domain) { return s }
        }
        return quoted(s)
    }

    /// An RFC 7208 §9.1 key-value: a dot-atom as it is, a quoted-string otherwise.
    public static func dotAtomOrQuoted(_ s: String) -> String {
        isDotAtom(Substring(s)) ? s : quoted(s)
    }

    /// RFC 2045 token: printable ASCII without space and tspecials.
    static func isToken(_ s: String) -> Bool {
        !s.isEmpty && s.unicodeScalars.allSatisfy { u in
            u.value > 0x20 && u.value < 0x7f && !"()<>@,;:\\\"/[]?=".unicodeScalars.contains(u)
        }
    }

    /// RFC 5322 dot-atom (UTF-8 allowed, RFC 6532).
    static func isDotAtom(_ s: Substring) -> Bool {
        guard !s.isEmpty, s.first != ".", s.last != ".", !s.contains("..") else { return false }
        return s.unicodeScalars.allSatisfy { u in
            u.value >= 0xa0 || (u.value > 0x20 && u.value < 0x7f && !"()<>[]:;@\\,\"".unicodeScalars.contains(u) && u != " ")
        }
    }
}
