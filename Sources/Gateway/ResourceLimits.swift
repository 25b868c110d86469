#if canImport(Glibc)
import Glibc
#endif

/// The process's descriptor limit. Every session costs one descriptor, its downstream
/// connection another, and each DNS question in flight one more, so the default soft limit
/// of 1024 is met long before `connectionLimit: 1000` is.
enum ResourceLimits {
    struct OpenFiles: Sendable {
        var before: Int
        var after: Int
        var needed: Int
    }

    /// Descriptors the configuration can use at once: two per connection, the DNS queries
    /// in flight, and room for listeners, the log, spools and pools.
    static func neededOpenFiles(connections: Int, dnsInFlight: Int) -> Int {
        connections.multipliedReportingOverflow(by: 2).partialValue.addingReportingOverflow(dnsInFlight + 256).partialValue
    }

    /// Raises the soft limit to the hard limit (never lowers it).
    static func raiseOpenFiles(needed: Int) -> OpenFiles {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return OpenFiles(before: -1, after: -1, needed: needed) }
        let before = rl.rlim_cur
        if rl.rlim_cur < rl.rlim_max {
            var raised = rl
            raised.rlim_cur = rl.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { rl = raised }
        }
        func int(_ v: rlim_t) -> Int { v > rlim_t(Int.max) ? Int.max : Int(v) }
        return OpenFiles(before: int(before), after: int(rl.rlim_cur), needed: needed)
    }
}
