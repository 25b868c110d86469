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

    public func write(into out: inout String) {
        switch self {
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isFinite { out += String(d) } else { out += "null" }
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    static let hex: [Character] = Array("0123456789abcdef")

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f || u.value == 0x2028 || u.value == 0x2029 {
                    out += "\\u"
                    out += format4(u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    private static func format4(_ v: UInt32) -> String {
        var s = ""
        for shift in stride(from: 12, through: 0, by: -4) { s.append(hex[Int(v >> UInt32(shift)) & 0xf]) }
        return s
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
