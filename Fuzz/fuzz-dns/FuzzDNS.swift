// libFuzzer target: DNS messages through libldns and our decoder (see fuzz/README.md).
import DNSResolver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDNS(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let m = DNSWire.parse(bytes) {
        for r in m.answers + m.authority { _ = r.record?.description }
    }
    return 0
}
