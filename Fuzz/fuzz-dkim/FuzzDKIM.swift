// libFuzzer target: DKIM header fields and bodies up to and through libopendkim, with key
// lookups that fail at once (no nameservers) (see fuzz/README.md).
import Dispatch
import DNSResolver
@testable import MailAuth

let resolver = DNSResolver(config: ResolverConfig(servers: []))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDKIM(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let message = Array(UnsafeBufferPointer(start: data, count: size))
    let done = DispatchSemaphore(value: 0)
    Task {
        let v = DKIMVerifier(resolver: resolver, maxSignatures: 3, keyTimeout: .milliseconds(50))
        _ = await v.verify(message: message)
        done.signal()
    }
    done.wait()
    return 0
}
