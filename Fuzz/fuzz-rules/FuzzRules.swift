// libFuzzer target: the rules language and the policy YAML reader (see fuzz/README.md).
@testable import PolicyEngine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRules(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var parser = Parser(text, file: "fuzz.rules")
    _ = parser.parseFile()
    var yaml = YAMLReader(file: "fuzz.yaml")
    if let root = yaml.compose(text) {
        _ = yaml.mapping(root, "policy", allowed: ["name", "checks", "rules", "thresholds"])
    }
    _ = Glob.parse(text)
    return 0
}
