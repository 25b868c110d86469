// libFuzzer target: the SPF record parser and the macro-string parser (see fuzz/README.md).
@testable import MailAuth

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSPF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? SPFEvaluator.parse(text)
    _ = try? SPFEvaluator.parseMacroString(text, explain: true)
    _ = try? SPFEvaluator.parseMacroString(text, explain: false)
    return 0
}
