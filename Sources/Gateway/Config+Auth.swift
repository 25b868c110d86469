import Yams

extension ConfigLoader.Reader {
    /// `auth: {passwdFile, maxFailuresPerSession, maxFailuresPerClient, failureWindow, failureDelay}`.
    mutating func readAuth(_ n: Node, into a: inout AuthConfig) {
        let keys: Set = ["passwdFile", "maxFailuresPerSession", "maxFailuresPerClient", "failureWindow", "failureDelay"]
        for (k, _, v) in mapping(n, "auth", allowed: keys) {
            switch k {
            case "passwdFile": a.passwdFile = string(v, k)
            case "maxFailuresPerSession": if let i = int(v, k, min: 1, max: 100) { a.maxFailuresPerSession = i }
            case "maxFailuresPerClient": if let i = int(v, k, min: 1) { a.maxFailuresPerClient = i }
            case "failureWindow": if let i = int(v, k, min: 1, max: 86400 * 7) { a.failureWindow = i }
            default: if let i = int(v, k, max: 60_000) { a.failureDelay = i }
            }
        }
    }
}
