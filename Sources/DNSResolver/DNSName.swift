import CIDN2
import CLDNS
#if canImport(Glibc)
import Glibc
#endif

/// Names as they are asked and compared. A U-label (`bücher`) becomes its A-label
/// (`xn--bcher-kva`, IDNA 2008 / UTS #46 non-transitional, through libidn2); a label that is
/// not valid IDNA keeps its octets and is asked as it is, as are octets that are legal in
/// DNS but not in host names (a space from SPF's `%_`). Every name is then put in libldns'
/// presentation form (`a\032b.test`), the form answers are read back in, so a question and
/// its answer compare octet for octet. Nil when the name is not a valid DNS name.
public enum DNSName {
    public static func asked(_ name: String) -> String? {
        let n = canonicalName(name)
        guard !n.isEmpty else { return nil }
        // Letters, digits, `-`, `_` and dots (nearly every name asked) read back as they are.
        if n.utf8.allSatisfy(isPlain) { return DNSWire.isValidName(n) ? n : nil }
        return presentation(n)
    }

    /// The name's presentation form, as libldns reads it back (the general path).
    static func presentation(_ n: String) -> String? {
        let labels = n.split(separator: ".", omittingEmptySubsequences: false).map { aLabel(String($0)) }
        let joined = labels.joined(separator: ".")
        guard DNSWire.isValidName(joined) else { return nil }
        // Backslashes are octets here, not escapes.
        let escaped = joined.replacingOccurrences(of: "\\", with: "\\\\")
        guard let rdf = ldns_dname_new_frm_str(escaped + ".") else { return nil }
        defer { ldns_rdf_deep_free(rdf) }
        guard let c = ldns_rdf2str(rdf) else { return nil }
        defer { free(c) }
        return canonicalName(String(cString: c))
    }

    /// A lower-case letter, digit, `-`, `_` or `.`: an octet presentation form keeps as it is.
    static func isPlain(_ b: UInt8) -> Bool {
        (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b == 45 || b == 95 || b == 46
    }

    /// One label's A-label, or the label itself (ASCII, or not valid IDNA).
    static func aLabel(_ label: String) -> String {
        guard !label.utf8.allSatisfy({ $0 < 0x80 }) else { return label }
        var out: UnsafeMutablePointer<CChar>?
        let rc = idn2_to_ascii_8z(label, &out, Int32(IDN2_NONTRANSITIONAL.rawValue))
        guard rc == Int32(IDN2_OK.rawValue), let out else { return label }
        defer { idn2_free(out) }
        return String(cString: out).lowercased()
    }
}
