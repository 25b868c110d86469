// libFuzzer target: the line framer fed in arbitrary chunks, the DATA reader, the header
// field assembler and the Authentication-Results reader (see fuzz/README.md).
import NIOCore
import SMTPProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzData(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let split = bytes.first else { return 0 }
    // The first octet chooses the read size, so line ends fall across reads.
    let chunk = Int(split % 64) + 1
    var framer = SMTPLineFramer(maxLineLength: 100)
    var reader = DataReader(maxLineLength: 100)
    var headers = HeaderFieldAssembler(maxOctets: 512)
    var buffer = ByteBuffer()
    var i = 1
    while i < bytes.count {
        buffer.writeBytes(bytes[i..<min(bytes.count, i + chunk)])
        i += chunk
        while let line = framer.nextLine(&buffer) {
            precondition(line.bytes.readableBytes <= 100, "a line kept more than the limit")
            for event in reader.feed(line) {
                if case .content(let c) = event, reader.inHeader, let f = headers.feed(c.readableBytesView) {
                    _ = AuthenticationResults.claims(f, authservID: "gw.test")
                }
            }
        }
        precondition(buffer.readableBytes <= 100 + chunk, "the framer buffered past its limit")
    }
    if let f = headers.finish() { _ = AuthenticationResults.authservID(ofField: f) }
    precondition(headers.octets <= 512 || headers.tooLarge)
    return 0
}
