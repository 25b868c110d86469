import Foundation
import DecisionLog

extension GatewayServer {
    /// One line on stderr, whole.
    public static let standardErrorLine: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }

    /// Reads the passwd-file again (SIGHUP). A file with a bad line is refused, logged, and
    /// the users in force stay. Returns the errors.
    @discardableResult
    public func reloadUsers(reason: String = "sighup") -> [String] {
        guard let a = shared.authenticator else { return [] }
        do {
            try a.reload()
            log.append(LogRecord(event: "auth.reload", fields: [("trigger", .string(reason)), ("result", "ok"), ("file", .string(a.path))]))
            return []
        } catch {
            let lines = (error as? PasswdFileError)?.errors ?? ["\(error)"]
            log.append(LogRecord(event: "auth.reload", fields: [
                ("trigger", .string(reason)), ("result", "refused"), ("file", .string(a.path)),
                ("reason", .string("the users in force stay")), ("errors", .array(lines.map { .string($0) })),
            ]))
            return lines
        }
    }
}
