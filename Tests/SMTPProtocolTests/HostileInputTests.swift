import NIOCore
import Testing
@testable import SMTPProtocol

/// Random and adversarial bytes through every parser, with a fixed seed so a failure
/// repeats. The parsers must never trap, must keep memory bounded, and must keep their
/// promises: replies are single protocol-safe lines, DATA ends only on <CRLF>.<CRLF>.
@Suite struct HostileInputTests {
    /// SplitMix64: small, fast, deterministic.
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// Bytes biased towards the ones that matter to SMTP.
    static func hostileBytes(_ rng: inout Rng, count: Int) -> [UInt8] {
        let interesting: [UInt8] = Array("\r\n.<>@:\"\\ [] =,".utf8) + [0, 0x7f, 0xc3, 0xa9, 0xff, 0x80]
        return (0..<count).map { _ in
            rng.below(3) == 0 ? interesting[rng.below(interesting.count)] : UInt8(truncatingIfNeeded: rng.next())
        }
    }

    @Test func commandParserNeverTrapsAndRepliesAreSafe() {
        var rng = Rng(state: 1)
        let verbs = ["MAIL FROM:", "RCPT TO:", "EHLO ", "HELO ", "VRFY ", "DATA", "", "mail from:<", "RCPT TO:<\""]
        for i in 0..<20_000 {
            let tail = String(decoding: Self.hostileBytes(&rng, count: rng.below(300)), as: UTF8.self)
            let line = verbs[i % verbs.count] + tail
            for utf8 in [false, true] {
                switch CommandParser.parse(line, options: .init(addressBracketsEnforcement: i % 2 == 0), transactionUTF8: utf8) {
                case .success(.mail(let path, _)):
                    if let m = path.mailbox {
                        #expect(m.localPart.utf8.count <= AddressParser.maxLocalPart)
                        #expect(m.domain.utf8.count <= AddressParser.maxDomain)
                        #expect(!m.description.contains("\r") && !m.description.contains("\n"))
                    }
                case .success(.rcpt(let m)):
                    #expect(!m.description.contains("\r") && !m.description.contains("\n"))
                    #expect(!m.description.utf8.contains(0))
                case .success:
                    break
                case .failure(let e):
                    let wire = e.reply.encoded
                    #expect((400..<600).contains(e.reply.code))
                    #expect(wire.hasSuffix("\r\n"))
                    #expect(wire.dropLast(2).contains("\r") == false)
                }
            }
        }
    }

    @Test func replyTextCannotBreakTheProtocol() {
        var rng = Rng(state: 2)
        for _ in 0..<5_000 {
            let text = String(decoding: Self.hostileBytes(&rng, count: rng.below(1200)), as: UTF8.self)
            let r = SMTPReply(550, "5.7.1", text)
            let lines = r.encoded.split(separator: "\r\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count == r.lines.count)
            for (i, l) in lines.enumerated() {
                // Octets, not Characters: a combining mark may follow the space.
                #expect(l.utf8.starts(with: (i == lines.count - 1 ? "550 5.7.1 " : "550-5.7.1 ").utf8))
                #expect(l.utf8.count <= 512)
                #expect(!l.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f })
            }
        }
    }

    @Test func framerKeepsMemoryBoundedAndLosesNoLines() {
        var rng = Rng(state: 3)
        for _ in 0..<300 {
            var framer = SMTPLineFramer(maxLineLength: 1000)
            var buffer = ByteBuffer()
            let input = Self.hostileBytes(&rng, count: rng.below(20_000))
            var lfs = 0
            var lines = 0
            var offset = 0
            while offset < input.count {
                let n = min(input.count - offset, 1 + rng.below(3000))
                buffer.writeBytes(input[offset..<(offset + n)])
                lfs += input[offset..<(offset + n)].filter { $0 == 10 }.count
                offset += n
                while let line = framer.nextLine(&buffer) {
                    lines += 1
                    #expect(line.bytes.readableBytes <= 1000)
                    #expect(line.overflow == (line.wireLength > 1000))
                }
                // Never more than one line's worth plus one read buffered.
                #expect(buffer.readableBytes <= 1000 + 3000)
            }
            #expect(lines == lfs, "every LF ends exactly one line")
        }
    }

    @Test func dataReaderEndsOnlyOnCRLFDotCRLF() {
        var rng = Rng(state: 4)
        for _ in 0..<500 {
            var raw = Self.hostileBytes(&rng, count: rng.below(5000))
            // Whatever the content, the stream as a whole ends the first time "\r\n.\r\n"
            // appears (counting the CRLF of the DATA command before it).
            raw += Array("\r\n.\r\n".utf8)
            let stream: [UInt8] = Array("\r\n".utf8) + raw
            var firstEnd = 0
            for i in 0...(stream.count - 5) where Array(stream[i..<(i + 5)]) == Array("\r\n.\r\n".utf8) {
                firstEnd = i + 5 - 2   // offset in `raw` just past the terminator
                break
            }
            var framer = SMTPLineFramer(maxLineLength: 1000)
            var reader = DataReader()
            var buffer = ByteBuffer(bytes: raw)
            var consumed = 0
            var ended = false
            while !ended, let line = framer.nextLine(&buffer) {
                consumed = raw.count - buffer.readableBytes
                if reader.feed(line).contains(.end) { ended = true }
            }
            // Whatever the problems (bare LF, bare CR, NUL, over-long lines), the end is the
            // first <CRLF>.<CRLF>, never earlier and never later.
            #expect(ended)
            #expect(consumed == firstEnd)
        }
    }
}
