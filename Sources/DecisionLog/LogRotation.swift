/// When the decision log starts a new file, and how long rotated files are kept.
public struct LogRotation: Sendable, Equatable {
    /// Rotate once the file reaches this many octets (0: never by size).
    public var maxOctets = 0
    /// Rotate when the UTC day changes.
    public var daily = false
    /// Delete rotated files older than this many days (0: keep them all); each deletion is logged.
    public var retentionDays = 0

    public init(maxOctets: Int = 0, daily: Bool = false, retentionDays: Int = 0) {
        self.maxOctets = maxOctets
        self.daily = daily
        self.retentionDays = retentionDays
    }

    var enabled: Bool { maxOctets > 0 || daily }
}
