// libFuzzer target: the inbound framer (command lines, DATA's text after a 354, BDAT
// chunks) fed in arbitrary reads, the DATA reader, the chunk reader, the header field
// assembler and the Authentication-Results reader (see fuzz/README.md).
import NIOCore
import SMTPProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzData(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let split = bytes.first else { return 0 }
    // The first octet chooses the read size, so line ends and chunks fall across reads.
    let chunk = Int(split % 64) + 1
    var framer = SMTPInboundFramer(maxLineLength: 100)
    var reader = DataReader(maxLineLength: 100)
    var chunks = ChunkReader(maxLineLength: 100)
    var headers = HeaderFieldAssembler(maxOctets: 512)
    var inData = false
    var chunkLeft = 0
    var buffer = ByteBuffer()
    var i = 1
    while i < bytes.count {
        buffer.writeBytes(bytes[i..<min(bytes.count, i + chunk)])
        i += chunk
        while let item = framer.next(&buffer) {
            switch item {
            case .chunk(let piece):
                precondition(piece.readableBytes <= SMTPInboundFramer.maxPiece && piece.readableBytes <= chunkLeft, "a piece past its chunk")
                chunkLeft -= piece.readableBytes
                _ = chunks.feed(piece)
            case .text(let lines):
                precondition(inData && !lines.isEmpty, "message text outside DATA")
                precondition(lines.reduce(0) { $0 + $1.bytes.readableBytes } < SMTPInboundFramer.maxPiece + 100, "a piece of text past its bound")
                for line in lines {
                    precondition(inData, "text after the end of data")
                    precondition(line.bytes.readableBytes <= 100, "a line kept more than the limit")
                    for event in reader.feed(line) {
                        if event == .end { inData = false }
                        if case .content(let c) = event, reader.inHeader, let f = headers.feed(c.readableBytesView) {
                            _ = AuthenticationResults.claims(f, authservID: "gw.test")
                            if let h = HeaderField.parse(f) {
                                precondition(h.name.utf8.count + h.value.utf8.count <= f.count * 3, "a parsed field longer than its octets")
                            }
                        }
                    }
                }
            case .line(let line):
                precondition(line.bytes.readableBytes <= 100, "a line kept more than the limit")
                precondition(chunkLeft == 0, "a line inside a chunk")
                precondition(!inData, "a command line inside DATA's text")
                if let c = line.chunk {
                    chunkLeft = c.size
                    if c.last { _ = chunks.finish() }
                } else if String(buffer: line.bytes).uppercased() == "DATA" {
                    // As the server does: a DATA line is answered 354.
                    framer.dataReplySent()
                    inData = true
                }
                // As the server does when it refuses STARTTLS: what followed is framed.
                if framer.held { framer.release() }
            case .tls:
                preconditionFailure("the framer alone never reports a handshake")
            }
        }
        precondition(buffer.readableBytes <= 100 + chunk, "the framer buffered past its limit")
    }
    if let f = headers.finish() { _ = AuthenticationResults.authservID(ofField: f) }
    precondition(headers.octets <= 512 || headers.tooLarge)
    return 0
}
