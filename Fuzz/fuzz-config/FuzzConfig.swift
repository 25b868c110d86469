// libFuzzer target: the configuration loader (YAML with file:line diagnostics) (see
// fuzz/README.md).
import Gateway

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let c = try? ConfigLoader.parse(text, file: "fuzz.yaml") {
        for l in c.listeners { _ = l.maxMessageOctets }
    }
    return 0
}
