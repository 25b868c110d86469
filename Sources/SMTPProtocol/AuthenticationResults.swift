/// Reading an `Authentication-Results:` field that arrived with a message (RFC 8601 §2.2),
/// to tell whether it claims to come from us.
public enum AuthenticationResults {
    /// The authserv-id of a whole field (its lines joined by CRLF), lower-cased; nil when the
    /// field is not Authentication-Results. Folding, comments and a quoted id are read as an
    /// RFC 5322 parser reads them, so `Authentication-Results :`, a fold right after the
    /// colon and `(comment) id;` all name their id.
    public static func authservID<C: Collection>(ofField field: C) -> String? where C.Element == UInt8 {
        // Most fields are other fields: a name that does not start with "a" is out at once.
        guard let first = field.first(where: { !isBlank($0) }), first | 0x20 == UInt8(ascii: "a") else { return nil }
        let bytes = Array(field)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        // White space (folding included) may stand before the colon (RFC 5322 obs-optional).
        let name = bytes[..<colon].filter { !isBlank($0) }.map { $0 >= 0x41 && $0 <= 0x5a ? $0 + 32 : $0 }
        guard name == Array("authentication-results".utf8) else { return nil }
        let value = withoutComments(bytes[(colon + 1)...])
        var i = value.startIndex
        while i < value.endIndex, isBlank(value[i]) { i += 1 }
        var id: [UInt8] = []
        if i < value.endIndex, value[i] == 0x22 {
            i += 1
            while i < value.endIndex, value[i] != 0x22 {
                if value[i] == 0x5c { i += 1 }
                if i < value.endIndex, value[i] != 0x0d, value[i] != 0x0a { id.append(value[i]) }
                i += 1
            }
        } else {
            while i < value.endIndex, !isBlank(value[i]), value[i] != 0x3b { id.append(value[i]); i += 1 }
        }
        return String(decoding: id, as: UTF8.self).lowercased()
    }

    /// True when the field is Authentication-Results with `authservID` (compared without
    /// case and without a trailing dot).
    public static func claims<C: Collection>(_ field: C, authservID ours: String) -> Bool where C.Element == UInt8 {
        claims(field, authservIDs: [normalised(ours)])
    }

    /// The same for any of several ids (every listener's name), given `normalised`.
    public static func claims<C: Collection>(_ field: C, authservIDs ours: Set<String>) -> Bool where C.Element == UInt8 {
        guard let id = authservID(ofField: field) else { return false }
        let n = normalised(id)
        return !n.isEmpty && ours.contains(n)
    }

    /// Lower case, no trailing dot.
    public static func normalised(_ id: String) -> String {
        var s = id.lowercased()
        while s.hasSuffix(".") { s.removeLast() }
        return s
    }

    static func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0d || b == 0x0a }

    /// The value with every comment (nested, with quoted pairs) replaced by a space;
    /// quoted strings are kept as they are.
    static func withoutComments(_ v: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(v.count)
        var depth = 0
        var quoted = false
        var i = v.startIndex
        while i < v.endIndex {
            let b = v[i]
            if b == 0x5c, quoted || depth > 0 {
                if depth == 0 { out.append(b); if i + 1 < v.endIndex { out.append(v[i + 1]) } }
                i += 2
                continue
            }
            if depth == 0 && b == 0x22 { quoted.toggle() }
            if !quoted && b == 0x28 { depth += 1 }
            else if !quoted && b == 0x29 && depth > 0 { depth -= 1; if depth == 0 { out.append(0x20) } }
            else if depth == 0 { out.append(b) }
            i += 1
        }
        return out
    }
}
