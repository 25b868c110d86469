import PolicyEngine
import Yams

/// Every check that exists, for the policy compiler: its name, stages, the values of its
/// result, the facts it reports and its failure default; and how to build it from its
/// settings. A new check adds one entry to `catalog` and one case to `make`.
public struct CheckCatalog: CheckFactory {
    public init() {}

    public var catalog: [CheckInfo] {
        [
            CheckInfo(name: "size", stages: [.mail, .message], results: ["unlimited", "undeclared", "pass", "oversize", "skipped"],
                      defaultOnError: .tempfail),
            CheckInfo(name: "helo", stages: [.helo], results: ["pass", "invalid", "skipped", "none"], defaultOnError: .pass),
        ]
    }

    public func make(_ name: String, settings: Node?, reader: inout YAMLReader) -> (any Check)? {
        switch name {
        case "size":
            _ = reader.mapping(settings, "checks.size", allowed: [])
            return SizeCheck()
        case "helo":
            var o = HeloCheck.Options()
            let before = reader.diagnostics.count
            for (k, v) in reader.mapping(settings, "checks.helo", allowed: ["literalMustMatchClient", "checkAuthorized", "reject", "score"]) {
                switch k {
                case "literalMustMatchClient": o.literalMustMatchClient = reader.bool(v, k) ?? o.literalMustMatchClient
                case "checkAuthorized": o.checkAuthorized = reader.bool(v, k) ?? o.checkAuthorized
                case "reject": o.reject = reader.bool(v, k) ?? o.reject
                default: o.score = reader.number(v, k) ?? o.score
                }
            }
            return reader.diagnostics.count == before ? HeloCheck(options: o) : nil
        default:
            return nil
        }
    }
}
