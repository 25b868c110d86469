/// DecisionLog: the append-only, hash-chained record of every decision the gateway makes.
///
/// One JSON object a line (JSON Lines). Every record carries a sequence number, a UTC
/// timestamp, the session id and `prev`, the SHA-256 of the previous record's line, so an
/// edit, a deletion or a reordering breaks the chain; a `.head` file beside the log holds
/// the last durable record's number and hash so that a cut-off tail is caught too. The file
/// is opened with O_APPEND and never rewritten. Durability is either an fsync before every
/// acknowledgement or group commit every N milliseconds; callers that must not go on
/// without a durable record (a transaction's outcome) await it, and a log that cannot be
/// written turns into an error they can answer with a 4xx.

/// A JSON value with ordered object keys, so records serialise the same way every time.
public indirect enum JSONValue: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.null, .null): return true
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Serialises into UTF-8 bytes: the log builds every record this way, without
    /// intermediate Strings.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .int(let i): JSONValue.writeInt(i, into: &out)
        case .double(let d):
            out.append(contentsOf: (d.isFinite ? String(d) : "null").utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .null: out.append(contentsOf: "null".utf8)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// The same, as a String.
    public func write(into out: inout String) {
        var bytes: [UInt8] = []
        write(into: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeInt(_ i: Int, into out: inout [UInt8]) {
        if i >= 0 && i < 10 { out.append(UInt8(48 + i)); return }
        out.append(contentsOf: String(i).utf8)
    }

    /// A JSON string: quotes, backslash and controls escaped; U+2028/U+2029 escaped too, so
    /// a line is valid JavaScript as well. Everything else is copied as UTF-8.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { u in
            var i = 0
            let n = u.count
            while i < n {
                let b = u[i]
                switch b {
                case 0x22: out.append(0x5C); out.append(0x22)
                case 0x5C: out.append(0x5C); out.append(0x5C)
                case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
                case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
                case 0x00..<0x20, 0x7F:
                    out.append(contentsOf: "\\u00".utf8)
                    out.append(hexDigits[Int(b >> 4)])
                    out.append(hexDigits[Int(b & 0xF)])
                case 0xE2 where i + 2 < n && u[i + 1] == 0x80 && (u[i + 2] == 0xA8 || u[i + 2] == 0xA9):
                    out.append(contentsOf: (u[i + 2] == 0xA8 ? "\\u2028" : "\\u2029").utf8)
                    i += 2
                default:
                    out.append(b)
                }
                i += 1
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The same, onto a String.
    static func writeString(_ s: String, into out: inout String) {
        var bytes: [UInt8] = []
        writeString(s, into: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }
}

/// One record before the log numbers and chains it.
public struct LogRecord: Sendable {
    public var event: String
    public var session: String?
    public var fields: [(String, JSONValue)]

    public init(event: String, session: String? = nil, fields: [(String, JSONValue)] = []) {
        self.event = event
        self.session = session
        self.fields = fields
    }
}
