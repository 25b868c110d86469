import Testing
import NIOCore
import SMTPProtocol

@Suite struct LineFramerTests {
    @Test func crlfLine() throws {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer(string: "HELO client.example\r\n")
        let line = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: line.bytes) == "HELO client.example")
        #expect(line.ending == .crlf)
        #expect(line.wireLength == 21)
        #expect(!line.overflow)
        #expect(!line.containsBareCR)
        #expect(!line.containsNUL)
        #expect(buf.readableBytes == 0)
        expectNil(framer.nextLine(&buf))
    }

    @Test func bareLFLine() throws {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer(string: "NOOP\nQUIT\r\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: a.bytes) == "NOOP")
        #expect(a.ending == .bareLF)
        #expect(a.wireLength == 5)
        #expect(!a.overflow)
        let b = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: b.bytes) == "QUIT")
        #expect(b.ending == .crlf)
        #expect(b.wireLength == 6)
        expectNil(framer.nextLine(&buf))
    }

    @Test func emptyLines() throws {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer(string: "\r\n\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(a.bytes.readableBytes == 0)
        #expect(a.ending == .crlf)
        #expect(a.wireLength == 2)
        let b = try unwrap(framer.nextLine(&buf))
        #expect(b.bytes.readableBytes == 0)
        #expect(b.ending == .bareLF)
        #expect(b.wireLength == 1)
    }

    @Test func severalLinesInOneBuffer() {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer(string: "EHLO a.example\r\nMAIL FROM:<>\r\nRCPT TO:<b@c.example>\r\nDATA")
        var got: [String] = []
        while let l = framer.nextLine(&buf) { got.append(String(buffer: l.bytes)) }
        #expect(got == ["EHLO a.example", "MAIL FROM:<>", "RCPT TO:<b@c.example>"])
        // The partial line stays in the buffer.
        #expect(String(buffer: buf) == "DATA")
    }

    @Test func lineSplitAcrossTwoFeeds() throws {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer(string: "MAIL FROM:<a@")
        expectNil(framer.nextLine(&buf))
        #expect(buf.readableBytes == 13)
        buf.writeString("example.org>\r\nRSET\r\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: a.bytes) == "MAIL FROM:<a@example.org>")
        #expect(a.ending == .crlf)
        #expect(a.wireLength == 27)
        let b = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: b.bytes) == "RSET")
    }

    @Test func crlfSplitBetweenCRAndLF() throws {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer(string: "NOOP\r")
        expectNil(framer.nextLine(&buf))
        buf.writeString("\n")
        let l = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: l.bytes) == "NOOP")
        #expect(l.ending == .crlf)
        #expect(l.wireLength == 6)
        #expect(!l.containsBareCR)
    }

    @Test func lineSplitIntoManySingleBytes() {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer()
        var lines: [SMTPLine] = []
        for b in Array("HELO x\r\nQUIT\n".utf8) {
            buf.writeInteger(b)
            if let l = framer.nextLine(&buf) { lines.append(l) }
        }
        #expect(lines.map { String(buffer: $0.bytes) } == ["HELO x", "QUIT"])
        #expect(lines.map(\.ending) == [.crlf, .bareLF])
        #expect(lines.map(\.wireLength) == [8, 5])
    }

    @Test func crInTheMiddleIsABareCR() throws {
        var framer = SMTPLineFramer()
        var buf = ByteBuffer(string: "a\rb\r\nab\r\r\nok\r\nn\u{0}ul\r\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: a.bytes) == "a\rb")
        #expect(a.containsBareCR)
        #expect(a.ending == .crlf)
        // Only the CR right before the LF belongs to the line ending.
        let b = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: b.bytes) == "ab\r")
        #expect(b.containsBareCR)
        #expect(b.ending == .crlf)
        #expect(b.wireLength == 5)
        let c = try unwrap(framer.nextLine(&buf))
        #expect(!c.containsBareCR)
        #expect(!c.containsNUL)
        let d = try unwrap(framer.nextLine(&buf))
        #expect(d.containsNUL)
        #expect(!d.containsBareCR)
    }

    @Test func lineOfExactlyTheLimitIsNotOverflow() throws {
        var framer = SMTPLineFramer(maxLineLength: 10)
        var buf = ByteBuffer(string: "12345678\r\n123456789\r\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(!a.overflow)
        #expect(a.wireLength == 10)
        let b = try unwrap(framer.nextLine(&buf))
        #expect(b.overflow)
        #expect(b.wireLength == 11)
    }

    @Test func overlongLineInOneBufferIsFlagged() throws {
        var framer = SMTPLineFramer(maxLineLength: 10)
        var buf = ByteBuffer(string: "0123456789ABCDEF\r\nNEXT\r\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(a.overflow)
        #expect(a.wireLength > 10)
        #expect(a.ending == .crlf)
        let b = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: b.bytes) == "NEXT")
        #expect(!b.overflow)
        #expect(b.wireLength == 6)
    }

    @Test func overlongLineAcrossFeedsIsDiscardedNotBuffered() throws {
        var framer = SMTPLineFramer(maxLineLength: 10)
        var buf = ByteBuffer(string: "abcdefghijklmnopqrstuvwxy")  // 25 octets, no LF
        expectNil(framer.nextLine(&buf))
        #expect(buf.readableBytes == 0)  // excess dropped, not kept
        buf.writeString("12345")
        expectNil(framer.nextLine(&buf))
        #expect(buf.readableBytes <= 10)
        buf.writeString("678\r\nNEXT\r\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(a.overflow)
        #expect(a.wireLength == 11)  // saturates at limit + 1
        #expect(a.ending == .crlf)
        // The line's bytes are the head of the line, cut to the limit.
        #expect(String(buffer: a.bytes) == "abcdefghij")
        #expect(a.bytes.readableBytes <= 10)
        // The framer is back in step: the next line is whole.
        let b = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: b.bytes) == "NEXT")
        #expect(!b.overflow)
        #expect(b.wireLength == 6)
        expectNil(framer.nextLine(&buf))
    }

    @Test func bufferStaysBoundedWhileAHugeLineStreamsIn() throws {
        let max = 1000
        var framer = SMTPLineFramer(maxLineLength: max)
        var buf = ByteBuffer()
        let chunk = String(repeating: "x", count: 300)
        var peak = 0
        for _ in 0..<400 {  // 120 000 octets without a LF
            buf.writeString(chunk)
            expectNil(framer.nextLine(&buf))
            peak = Swift.max(peak, buf.readableBytes)
        }
        #expect(peak <= max)
        buf.writeString("\r\nQUIT\r\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(a.overflow)
        #expect(a.wireLength == max + 1)
        #expect(a.bytes.readableBytes <= max)
        let b = try unwrap(framer.nextLine(&buf))
        #expect(String(buffer: b.bytes) == "QUIT")
        #expect(!b.overflow)
    }

    @Test func hugeSingleChunkIsDroppedAtOnce() {
        var framer = SMTPLineFramer(maxLineLength: 1000)
        var buf = ByteBuffer(string: String(repeating: "y", count: 100_000))
        expectNil(framer.nextLine(&buf))
        #expect(buf.readableBytes == 0)
    }

    /// An overlong line that ends with a bare LF must still say so: the LF arrives in the
    /// same read as the byte before it, so the framer can see there is no CR.
    @Test func overlongLineEndingInBareLFReportsBareLF() throws {
        var framer = SMTPLineFramer(maxLineLength: 10)
        var buf = ByteBuffer(string: String(repeating: "z", count: 25))
        expectNil(framer.nextLine(&buf))
        buf.writeString("zz\n")
        let a = try unwrap(framer.nextLine(&buf))
        #expect(a.overflow)
        #expect(a.ending == .bareLF)
    }
}

/// `#require` for values produced by mutating calls (the macros cannot take `&` arguments).
func unwrap<T>(_ v: T?, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try #require(v, sourceLocation: sourceLocation)
}

func expectNil<T>(_ v: T?, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(v == nil, sourceLocation: sourceLocation)
}
