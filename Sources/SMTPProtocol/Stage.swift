/// The stages of an SMTP session at which a policy decides: connect, HELO/EHLO (LHLO),
/// MAIL, RCPT, data (the header section is complete) and message (end of data).
public enum Stage: String, CaseIterable, Sendable, Comparable {
    case connect, helo, mail, rcpt, data, message

    public static func < (a: Stage, b: Stage) -> Bool {
        a.order < b.order
    }

    public var order: Int {
        switch self {
        case .connect: return 0
        case .helo: return 1
        case .mail: return 2
        case .rcpt: return 3
        case .data: return 4
        case .message: return 5
        }
    }
}
