import Foundation
import DecisionLog
import SMTPProtocol

/// `log.redact`: recipients' local parts kept out of the decision log. `hash` writes
/// `h-` and 16 hex digits of SHA-256 over `log.redactKey` and the lower-cased local part (the
/// same recipient gives the same token, so an auditor can still count and follow it;
/// without a key, a random one per start, so tokens do not correlate across restarts);
/// `drop` writes `-`. The domain stays. Every string a record carries (recipients, replies
/// that quote the address, DSN ORCPT, downstream replies) has the address replaced.
public enum LogRedaction: String, Sendable {
    case off, hash, drop
}

struct LogRedactor: Sendable {
    let mode: LogRedaction
    let key: String

    init(mode: LogRedaction, key: String?) {
        self.mode = mode
        self.key = key ?? (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined()
    }

    /// `local@domain` with its local part redacted.
    func address(_ a: String) -> String {
        guard let at = a.lastIndex(of: "@") else { return token(a) }
        return token(String(a[..<at])) + a[at...]
    }

    func token(_ local: String) -> String {
        switch mode {
        case .off: return local
        case .drop: return "-"
        case .hash: return "h-" + Digest.sha256Hex(Array((key + "\u{0}" + local.lowercased()).utf8)).prefix(16)
        }
    }

    /// The fields with every occurrence of each address (any case) replaced.
    func redact(_ fields: [(String, JSONValue)], addresses: [String]) -> [(String, JSONValue)] {
        guard mode != .off, !addresses.isEmpty else { return fields }
        let pairs = addresses.filter { !$0.isEmpty }.map { ($0, address($0)) }
        return fields.map { ($0.0, redact($0.1, pairs)) }
    }

    private func redact(_ v: JSONValue, _ pairs: [(String, String)]) -> JSONValue {
        switch v {
        case .string(let s):
            var out = s
            for (a, r) in pairs { out = out.replacingOccurrences(of: a, with: r, options: .caseInsensitive) }
            return .string(out)
        case .array(let a): return .array(a.map { redact($0, pairs) })
        case .object(let o): return .object(o.map { ($0.0, redact($0.1, pairs)) })
        default: return v
        }
    }
}
