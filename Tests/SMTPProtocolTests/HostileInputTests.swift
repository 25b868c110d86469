import Foundation
import NIOCore
import Testing
@testable import SMTPProtocol

/// Random and adversarial bytes through every parser, with a fixed seed so a failure
/// repeats. The parsers must never trap, must keep memory bounded, and must keep their
/// promises: replies are single protocol-safe lines, DATA ends only on <CRLF>.<CRLF>.
///
/// The loops run on a thread of their own and collect violated invariants, so that they do
/// not occupy the cooperative pool other tests (and their timers) need.
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

    /// Runs `body` on its own thread; returns the violations it found.
    static func onThread(_ body: @escaping @Sendable () -> [String]) async -> [String] {
        await withCheckedContinuation { c in Thread.detachNewThread { c.resume(returning: body()) } }
    }

    @Test func commandParserNeverTrapsAndRepliesAreSafe() async {
        let violations = await Self.onThread {
            var bad: [String] = []
            var rng = Rng(state: 1)
            let verbs = ["MAIL FROM:", "RCPT TO:", "EHLO ", "HELO ", "VRFY ", "DATA", "", "mail from:<", "RCPT TO:<\""]
            for i in 0..<10_000 {
                let tail = String(decoding: Self.hostileBytes(&rng, count: rng.below(300)), as: UTF8.self)
                let line = verbs[i % verbs.count] + tail
                for utf8 in [false, true] {
                    switch CommandParser.parse(line, options: .init(addressBracketsEnforcement: i % 2 == 0), transactionUTF8: utf8) {
                    case .success(.mail(.mailbox(let m), _)), .success(.rcpt(let m, _)):
                        if m.localPart.utf8.count > AddressParser.maxLocalPart { bad.append("local part too long: \(line.debugDescription)") }
                        if m.domain.utf8.count > AddressParser.maxDomain { bad.append("domain too long: \(line.debugDescription)") }
                        if m.description.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) { bad.append("CR/LF/NUL in address: \(line.debugDescription)") }
                    case .success:
                        break
                    case .failure(let e):
                        let wire = Array(e.reply.encoded.utf8)
                        if !(400..<600).contains(e.reply.code) { bad.append("code \(e.reply.code) for \(line.debugDescription)") }
                        if wire.suffix(2) != [13, 10] || wire.dropLast(2).contains(13) || wire.dropLast(2).contains(10) {
                            bad.append("reply not one line: \(e.reply.encoded.debugDescription)")
                        }
                    }
                }
            }
            return bad
        }
        #expect(violations.isEmpty, "\(violations.prefix(5))")
    }

    @Test func replyTextCannotBreakTheProtocol() async {
        let violations = await Self.onThread {
            var bad: [String] = []
            var rng = Rng(state: 2)
            for _ in 0..<3_000 {
                let text = String(decoding: Self.hostileBytes(&rng, count: rng.below(1200)), as: UTF8.self)
                let r = SMTPReply(550, "5.7.1", text)
                let wire = Array(r.encoded.utf8)
                // Split on CRLF octets.
                var lines: [ArraySlice<UInt8>] = []
                var start = 0
                var i = 0
                while i + 1 < wire.count {
                    if wire[i] == 13 && wire[i + 1] == 10 { lines.append(wire[start..<i]); start = i + 2; i += 2 } else { i += 1 }
                }
                if start != wire.count { bad.append("reply does not end with CRLF") }
                if lines.count != r.lines.count { bad.append("\(lines.count) wire lines for \(r.lines.count) reply lines") }
                for (n, l) in lines.enumerated() {
                    let prefix = Array((n == lines.count - 1 ? "550 5.7.1 " : "550-5.7.1 ").utf8)
                    if !l.starts(with: prefix) { bad.append("line \(n) lacks its code") }
                    if l.count > 512 { bad.append("line of \(l.count) octets") }
                    if l.contains(where: { $0 < 0x20 || $0 == 0x7f }) { bad.append("control octet in a reply line") }
                }
            }
            return bad
        }
        #expect(violations.isEmpty, "\(violations.prefix(5))")
    }

    @Test func framerKeepsMemoryBoundedAndLosesNoLines() async {
        let violations = await Self.onThread {
            var bad: [String] = []
            var rng = Rng(state: 3)
            for round in 0..<150 {
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
                        if line.bytes.readableBytes > 1000 { bad.append("round \(round): line of \(line.bytes.readableBytes) kept") }
                        if line.overflow != (line.wireLength > 1000) { bad.append("round \(round): overflow flag wrong") }
                    }
                    // Never more than one line's worth plus one read buffered.
                    if buffer.readableBytes > 1000 + 3000 { bad.append("round \(round): \(buffer.readableBytes) octets buffered") }
                }
                if lines != lfs { bad.append("round \(round): \(lines) lines for \(lfs) LFs") }
            }
            return bad
        }
        #expect(violations.isEmpty, "\(violations.prefix(5))")
    }

    @Test func dataReaderEndsOnlyOnCRLFDotCRLF() async {
        let violations = await Self.onThread {
            var bad: [String] = []
            var rng = Rng(state: 4)
            let terminator = Array("\r\n.\r\n".utf8)
            for round in 0..<300 {
                // Whatever the content, the data ends the first time "\r\n.\r\n" appears
                // (counting the CRLF of the DATA command before it).
                let raw = Self.hostileBytes(&rng, count: rng.below(5000)) + terminator
                let stream: [UInt8] = [13, 10] + raw
                var firstEnd = -1
                for i in 0...(stream.count - 5) where Array(stream[i..<(i + 5)]) == terminator {
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
                // Whatever the problems (bare LF, bare CR, NUL, over-long lines), the end is
                // the first <CRLF>.<CRLF>, never earlier and never later.
                if !ended { bad.append("round \(round): no end found") }
                if consumed != firstEnd { bad.append("round \(round): ended at \(consumed), first terminator ends at \(firstEnd)") }
            }
            return bad
        }
        #expect(violations.isEmpty, "\(violations.prefix(5))")
    }
}
