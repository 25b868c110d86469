import Testing
import NIOCore
import SMTPProtocol

/// The inbound framer: where BDAT chunks begin and end, that DATA's text is never taken
/// for a chunk, and what arrives before the 354 is marked.
@Suite struct InboundFramerTests {
    /// Frames `input` fed `step` octets at a time; `after354` says after which item the
    /// server wrote 354.
    static func frame(_ input: String, step: Int = 1 << 20, after354: Int? = nil) -> [SMTPInbound] {
        var f = SMTPInboundFramer()
        var out: [SMTPInbound] = []
        var buffer = ByteBuffer()
        let bytes = Array(input.utf8)
        var i = 0
        while i < bytes.count {
            buffer.writeBytes(bytes[i..<min(bytes.count, i + step)])
            i += step
            while let item = f.next(&buffer) {
                out.append(item)
                if out.count == after354 { f.dataReplySent() }
            }
        }
        return out
    }

    /// Each item as a string; a piece of DATA's text as its lines, each in `«»`.
    static func text(_ items: [SMTPInbound]) -> [String] {
        items.flatMap { item -> [String] in
            switch item {
            case .line(let l): return [(l.chunk.map { "[\($0.size)\($0.last ? "L" : "")]" } ?? "") + (l.pipelinedAfterData ? "!" : "")
                + String(buffer: l.bytes)]
            case .text(let lines): return lines.map { "«" + String(buffer: $0.bytes) + "»" }
            case .chunk(let b): return ["<" + String(buffer: b) + ">"]
            case .tls(let info): return ["{\(info.version)}"]
            }
        }
    }

    @Test(arguments: [1, 3, 7, 1000])
    func aChunkIsHandedOnExactlyAndCommandsResumeAfterIt(step: Int) {
        let items = Self.frame("BDAT 12\r\nQUIT\r\nRSET\r\nNOOP\r\nBDAT 0 LAST\r\nQUIT\r\n", step: step)
        let t = Self.text(items)
        #expect(t.first == "[12]BDAT 12")
        #expect(t.dropFirst().prefix { $0.hasPrefix("<") }.map { $0.dropFirst().dropLast() }.joined() == "QUIT\r\nRSET\r\n")
        #expect(Array(t.suffix(3)) == ["NOOP", "[0L]BDAT 0 LAST", "QUIT"])
    }

    @Test func chunkPiecesAreBounded() {
        let body = String(repeating: "x", count: 20000)
        let items = Self.frame("BDAT 20000 LAST\r\n" + body)
        let sizes = items.dropFirst().map { if case .chunk(let b) = $0 { return b.readableBytes } else { return -1 } }
        #expect(sizes == [8192, 8192, 3616])
    }

    @Test func onlyAWellFormedBDATCommandLineStartsAChunk() {
        #expect(BDATCommand(line: Array("BDAT 10".utf8)) == BDATCommand(size: 10, last: false))
        #expect(BDATCommand(line: Array("bdat 0 last".utf8)) == BDATCommand(size: 0, last: true))
        #expect(BDATCommand(line: Array("BDAT 7 LAST  ".utf8)) == BDATCommand(size: 7, last: true))
        for bad in ["BDAT", "BDAT ", "BDAT x", "BDAT -1", "BDAT 1x", "BDAT 10 LASTX", "BDAT 10 FIRST", "BDAT  10",
                    "BDAT 1234567890123456789", "BDAT\t10", "XBDAT 10"] {
            #expect(BDATCommand(line: Array(bad.utf8)) == nil, "\(bad)")
        }
        #expect(BDATCommand(line: Array("BDAT 999999999999999999".utf8))?.size == 999_999_999_999_999_999)
        // An overlong line is never a BDAT, whatever it starts with.
        let long = "BDAT 5" + String(repeating: " ", count: 600) + "\r\nabcde"
        #expect(Self.text(Self.frame(long)).allSatisfy { !$0.hasPrefix("[") && !$0.hasPrefix("<") })
    }

    @Test func aBDATLineInDATAsTextIsTextUntilTheDot() {
        let input = "DATA\r\nBDAT 3\r\nabc\r\n.\r\nBDAT 3\r\nxyz"
        let t = Self.text(Self.frame(input, step: 6, after354: 1))
        #expect(t == ["DATA", "«BDAT 3»", "«abc»", "«.»", "[3]BDAT 3", "<xyz>"], "\(t)")
    }

    /// Only the answer to a DATA line starts message text: a 354 passed on from elsewhere
    /// does not, so a BDAT after it still has its chunk.
    @Test func a354WithoutADATALineIsIgnored() {
        let t = Self.text(Self.frame("NOOP\r\nBDAT 3\r\nxyz", after354: 1))
        #expect(t == ["NOOP", "[3]BDAT 3", "<xyz>"], "\(t)")
    }

    @Test func textBeforeThe354IsMarked() {
        let t = Self.text(Self.frame("DATA\r\nSubject: x\r\n\r\n.\r\n", after354: 3))
        #expect(t == ["DATA", "!Subject: x", "!", "«.»"], "\(t)")
        // A refused DATA followed by more commands: marked too, and harmless in command mode.
        let u = Self.text(Self.frame("data\r\nRSET\r\nMAIL FROM:<a@b>\r\n"))
        #expect(u == ["data", "!RSET", "!MAIL FROM:<a@b>"])
    }

    @Test func chunkedTextIsCheckedLikeDATAWithoutDotsOrEnd() {
        var r = ChunkReader()
        var events: [DataReader.Event] = []
        for piece in ["Subject: a\r", "\n\r\n.line\r\n", ".\r\nlast"] { events += r.feed(ByteBuffer(string: piece)) }
        events += r.finish()
        let content = events.compactMap { if case .content(let b) = $0 { return String(buffer: b) } else { return nil } }
        #expect(content == ["Subject: a", "", ".line", ".", "last"])
        #expect(events.contains(.headersComplete))
        #expect(!events.contains(.end))
        #expect(r.reader.size == 12 + 2 + 7 + 3 + 4, "the last line without CRLF counts as sent")
        // Line by line, the size after each line counts that line and those before it.
        var each = ChunkReader()
        each.append(ByteBuffer(string: "a: 1\r\n\r\nbody\r\nrest"))
        var sizes: [Int] = []
        while each.nextLine() != nil { sizes.append(each.reader.size) }
        _ = each.finish()
        #expect(sizes == [6, 8, 14])
        #expect(each.reader.size == 18)
        var bad = ChunkReader()
        _ = bad.feed(ByteBuffer(string: "Subject: a\r\n\r\nx\ny\r\n"))
        #expect(bad.reader.problem == .bareLF)
        var long = ChunkReader()
        _ = long.feed(ByteBuffer(string: String(repeating: "y", count: 999)))
        _ = long.finish()
        #expect(long.reader.problem == .lineTooLong)
    }

    @Test func nothingAfterSTARTTLSIsFramedUntilItIsAnswered() {
        var f = SMTPInboundFramer()
        var buffer = ByteBuffer()
        var out: [String] = []
        for b in "EHLO a\r\nstarttls\r\nMAIL FROM:<a@b>\r\n".utf8 {
            buffer.writeInteger(b)
            while let item = f.next(&buffer) { out += Self.text([item]) }
        }
        #expect(out == ["EHLO a", "starttls"])
        #expect(f.held)
        #expect(String(buffer: buffer) == "MAIL FROM:<a@b>\r\n")
        // Refused: what followed is framed as usual.
        var refused = f
        refused.release()
        #expect(Self.text(refused.next(&buffer).map { [$0] } ?? []) == ["MAIL FROM:<a@b>"])
        // Accepted: the framer starts over; the session's handler throws the octets away.
        f.reset()
        #expect(!f.held)
    }

    @Test func aSTARTTLSLineInsideDATAsTextIsText() {
        let t = Self.text(Self.frame("DATA\r\nSTARTTLS\r\nMAIL FROM:<a@b>\r\n.\r\nNOOP\r\n", after354: 1))
        #expect(t == ["DATA", "«STARTTLS»", "«MAIL FROM:<a@b>»", "«.»", "NOOP"])
    }

    /// DATA's text comes in pieces of whole lines, bounded by maxPiece (plus the line that
    /// crosses it); the end-of-data line ends its piece, and what follows it in the same
    /// read is framed as commands again.
    @Test(arguments: [1, 7, 100_000])
    func dataTextComesInBoundedPiecesOfWholeLines(step: Int) {
        let body = (0..<300).map { "line \($0) " + String(repeating: "x", count: 60) }
        let input = "DATA\r\n" + body.map { $0 + "\r\n" }.joined() + ".\r\nQUIT\r\n"
        let items = Self.frame(input, step: step, after354: 1)
        var pieces: [[SMTPLine]] = []
        for case .text(let lines) in items { pieces.append(lines) }
        #expect(pieces.allSatisfy { !$0.isEmpty && $0.reduce(0) { $0 + $1.bytes.readableBytes } < SMTPInboundFramer.maxPiece + 1000 })
        if step > 8192 { #expect(pieces.count > 1 && pieces.count < 10, "\(pieces.count) pieces") }
        #expect(Self.text(items) == ["DATA"] + body.map { "«\($0)»" } + ["«.»", "QUIT"])
    }
}
