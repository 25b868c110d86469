import Testing
import NIOCore
import SMTPProtocol

/// A DataReader event in a form that is easy to compare.
enum Ev: Equatable, CustomStringConvertible {
    case content(String)
    case headers
    case end

    var description: String {
        switch self {
        case .content(let s): return "content(\(s.debugDescription))"
        case .headers: return "headers"
        case .end: return "end"
        }
    }
}

struct DataRun {
    var events: [Ev] = []
    var reader: DataReader
    /// What the framer had not handed to the reader when the data ended (the next commands).
    var rest = ""
    var ended: Bool { events.last == .end }
}

/// Feeds `chunks` through a framer into a reader, as the session does, and stops at `.end`.
func readData(_ chunks: [String], max: Int = 1000) -> DataRun {
    var framer = SMTPLineFramer(maxLineLength: max)
    var run = DataRun(reader: DataReader(maxLineLength: max))
    var buf = ByteBuffer()
    for c in chunks {
        buf.writeString(c)
        while let line = framer.nextLine(&buf) {
            for e in run.reader.feed(line) {
                switch e {
                case .content(let b): run.events.append(.content(String(buffer: b)))
                case .headersComplete: run.events.append(.headers)
                case .end: run.events.append(.end)
                }
            }
            if run.ended {
                run.rest = String(buffer: buf)
                return run
            }
        }
    }
    run.rest = String(buffer: buf)
    return run
}

func readData(_ s: String, max: Int = 1000) -> DataRun { readData([s], max: max) }

@Suite struct DataReaderTests {
    @Test func simpleMessage() {
        let r = readData("Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        #expect(r.events == [.content("Subject: hi"), .headers, .content(""), .content("hello"), .end])
        #expect(r.reader.problem == nil)
        #expect(!r.reader.inHeader)
        #expect(r.rest == "QUIT\r\n")
    }

    @Test func dotUnstuffing() {
        let r = readData("Subject: x\r\n\r\n..x\r\n...\r\n..\r\n.y\r\n. \r\n.\r\n")
        #expect(r.events == [
            .content("Subject: x"), .headers, .content(""),
            .content(".x"), .content(".."), .content("."), .content("y"), .content(" "), .end,
        ])
        #expect(r.reader.problem == nil)
    }

    @Test func sizeCountsUnstuffedOctetsWithCRLF() {
        let r = readData("Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\n")
        // "Subject: x" 10+2, "" 0+2, ".dot" 4+2, "body" 4+2
        #expect(r.reader.size == 26)
        let empty = readData(".\r\n")
        #expect(empty.reader.size == 0)
        #expect(empty.events == [.end])
    }

    @Test func headersCompleteOnlyOnTheFirstEmptyLine() {
        let r = readData("A: 1\r\nB: 2\r\n\r\n\r\nbody\r\n\r\n.\r\n")
        #expect(r.events == [
            .content("A: 1"), .content("B: 2"), .headers, .content(""), .content(""), .content("body"), .content(""), .end,
        ])
        #expect(r.events.filter { $0 == .headers }.count == 1)
    }

    @Test func messageWithoutHeaders() {
        let r = readData("\r\nbody\r\n.\r\n")
        #expect(r.events == [.headers, .content(""), .content("body"), .end])
    }

    @Test func messageWithoutEmptyLineNeverCompletesHeaders() {
        let r = readData("A: 1\r\nB: 2\r\n.\r\n")
        #expect(r.events == [.content("A: 1"), .content("B: 2"), .end])
        #expect(r.reader.inHeader)
    }

    @Test func endOnlyOnDotCRLFAfterCRLF() {
        // A "." line with other text is content, not the end.
        let r = readData("a\r\n.x\r\n. \r\n.\r\n")
        #expect(r.events == [.content("a"), .content("x"), .content(" "), .end])
        // The end may be the very first line (the DATA line ended with CRLF).
        #expect(readData(".\r\n").events == [.end])
        // Data split across reads ends the same way.
        let s = readData(["a\r", "\n.", "\r", "\nRSET\r\n"])
        #expect(s.events == [.content("a"), .end])
        #expect(s.rest == "RSET\r\n")
    }

    @Test func noEndWithoutTerminator() {
        let r = readData("a\r\nb\r\n..\r\n")
        #expect(!r.ended)
        #expect(r.events == [.content("a"), .content("b"), .content(".")])
    }

    // MARK: SMTP smuggling

    @Test func smugglingLFDotLF() {
        let r = readData("Subject: a\r\n\r\nbody\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<v@example.org>\r\nDATA\r\n.\r\nQUIT\r\n")
        // The end is the real <CRLF>.<CRLF>, not the "\n.\n".
        #expect(r.events == [.content("Subject: a"), .headers, .content(""), .end])
        #expect(r.events.filter { $0 == .end }.count == 1)
        #expect(r.reader.problem == .bareLF)
        #expect(r.rest == "QUIT\r\n")
    }

    @Test func smugglingCRLFDotLF() {
        let r = readData("body\r\n.\nMAIL FROM:<evil@example.net>\r\n.\r\n")
        #expect(r.events == [.content("body"), .end])
        #expect(r.reader.problem == .bareLF)
        #expect(r.rest == "")
    }

    @Test func smugglingLFDotCRLF() {
        let r = readData("body\n.\r\nMAIL FROM:<evil@example.net>\r\n.\r\nNOOP\r\n")
        #expect(r.events == [.end])
        #expect(r.reader.problem == .bareLF)
        #expect(r.rest == "NOOP\r\n")
    }

    @Test func smugglingDoesNotEndEvenWithoutFurtherData() {
        for s in ["body\n.\n", "body\r\n.\n", "body\n.\r\n"] {
            let r = readData(s)
            #expect(!r.ended, "\(s.debugDescription) must not end the data")
            #expect(r.reader.problem == .bareLF, "\(s.debugDescription)")
        }
    }

    @Test func smugglingWithBareCRDot() {
        // "\r.\r\n": a CR that is not part of a CRLF.
        let r = readData("body\r.\r\nMAIL FROM:<e@x.example>\r\n.\r\n")
        #expect(r.events == [.end])
        #expect(r.reader.problem == .bareCR)
        let s = readData("body\r\n.\r\r\nx\r\n.\r\n")
        #expect(s.events == [.content("body"), .end])
        #expect(s.reader.problem == .bareCR)
    }

    @Test func dotLineFedDirectlyWithBareLFIsNotTheEnd() {
        var reader = DataReader()
        let dotLF = SMTPLine(bytes: ByteBuffer(string: "."), ending: .bareLF, wireLength: 2, overflow: false)
        let e1 = reader.feed(dotLF)
        #expect(e1 == [])
        #expect(reader.problem == .bareLF)
        let dotCRLF = SMTPLine(bytes: ByteBuffer(string: "."), ending: .crlf, wireLength: 3, overflow: false)
        // After a bare LF line, even "." CRLF is not the end.
        let e2 = reader.feed(dotCRLF)
        #expect(e2 == [])
        let e3 = reader.feed(dotCRLF)
        #expect(e3 == [.end])
    }

    /// "\n.\r\n" must not end the data after an overlong line either: the line that ends with
    /// the bare LF was longer than the limit and arrived over several reads.
    @Test func smugglingAfterOverlongLineSplitAcrossReads() {
        let r = readData(["a\r\n", String(repeating: "x", count: 5000), "\n.\r\nMAIL FROM:<e@x.example>\r\n.\r\n"])
        // The line is both overlong and ends in a bare LF; the ending is checked first.
        #expect(r.reader.problem == .bareLF)
        #expect(r.events == [.content("a"), .end])
        #expect(r.rest == "")
    }

    @Test func overflowedDotLineIsNotTheEnd() {
        var reader = DataReader(maxLineLength: 10)
        let l = SMTPLine(bytes: ByteBuffer(string: "."), ending: .crlf, wireLength: 11, overflow: true)
        let e = reader.feed(l)
        #expect(e == [])
        #expect(reader.problem == .lineTooLong)
    }

    // MARK: problems

    @Test func bareCR() {
        let r = readData("Subject: a\r\n\r\na\rb\r\nmore\r\n.\r\n")
        #expect(r.events == [.content("Subject: a"), .headers, .content(""), .end])
        #expect(r.reader.problem == .bareCR)
    }

    @Test func nul() {
        let r = readData("Subject: a\r\n\r\nx\u{0}y\r\n.\r\n")
        #expect(r.events == [.content("Subject: a"), .headers, .content(""), .end])
        #expect(r.reader.problem == .nul)
    }

    @Test func lineTooLong() {
        let ok = readData(String(repeating: "x", count: 998) + "\r\n.\r\n")
        #expect(ok.reader.problem == nil)
        #expect(ok.events == [.content(String(repeating: "x", count: 998)), .end])
        let long = readData(String(repeating: "x", count: 999) + "\r\n.\r\n")
        #expect(long.reader.problem == .lineTooLong)
        #expect(long.events == [.end])
        let huge = readData(["a\r\n", String(repeating: "x", count: 5000), "\r\nb\r\n.\r\n"])
        #expect(huge.reader.problem == .lineTooLong)
        #expect(huge.events == [.content("a"), .end])
    }

    @Test func firstProblemWins() {
        let r = readData("a\nb\u{0}\r\nc\rd\r\n.\r\n")
        #expect(r.reader.problem == .bareLF)
        #expect(r.ended)
        let s = readData("a\u{0}\r\nb\n\r\n.\r\n")
        #expect(s.reader.problem == .nul)
    }

    @Test func noContentIsDeliveredAfterAProblem() {
        let r = readData("A: 1\r\nbad\nB: 2\r\n\r\nbody\r\n.\r\n")
        #expect(r.events == [.content("A: 1"), .end])
        #expect(r.reader.problem == .bareLF)
        #expect(r.reader.inHeader)
    }

    @Test func problemReplies() {
        #expect(DataReader.Problem.bareLF.reply == SMTPReply(550, "5.6.0", "Message refused: bare LF in message text (RFC 5321 2.3.8)"))
        #expect(DataReader.Problem.bareCR.reply == SMTPReply(550, "5.6.0", "Message refused: bare CR in message text (RFC 5321 2.3.8)"))
        #expect(DataReader.Problem.nul.reply == SMTPReply(550, "5.6.0", "Message refused: NUL octet in message text"))
        #expect(DataReader.Problem.lineTooLong.reply
            == SMTPReply(500, "5.5.2", "Message refused: line longer than 1000 octets (RFC 5321 4.5.3.1.6)"))
        #expect(DataReader.Problem.bareLF.reply.encoded == "550 5.6.0 Message refused: bare LF in message text (RFC 5321 2.3.8)\r\n")
        #expect(DataReader.Problem.bareLF.name == "bare-lf")
        #expect(DataReader.Problem.bareCR.name == "bare-cr")
        #expect(DataReader.Problem.nul.name == "nul")
        #expect(DataReader.Problem.lineTooLong.name == "line-too-long")
    }
}

@Suite struct DotStufferTests {
    func stuff(_ chunks: [String]) -> (String, String) {
        var s = DotStuffer()
        var out = ByteBuffer()
        for c in chunks { s.stuff(ByteBuffer(string: c), into: &out) }
        return (String(buffer: out), s.terminator())
    }

    @Test func stuffsLeadingDots() {
        let (out, term) = stuff([".a\r\nb\r\n.c\r\n..\r\n"])
        #expect(out == "..a\r\nb\r\n..c\r\n...\r\n")
        #expect(term == ".\r\n")
    }

    @Test func dotsInsideLinesAreLeftAlone() {
        let (out, _) = stuff(["a.b\r\n x.\r\n"])
        #expect(out == "a.b\r\n x.\r\n")
    }

    @Test func stuffingAcrossChunkBoundaryAfterCRLF() {
        let (out, term) = stuff(["x\r\n", ".y\r\n"])
        #expect(out == "x\r\n..y\r\n")
        #expect(term == ".\r\n")
    }

    @Test func stuffingAcrossChunkBoundaryBetweenCRAndLF() {
        let (out, term) = stuff(["x\r", "\n.y"])
        #expect(out == "x\r\n..y")
        #expect(term == "\r\n.\r\n")
    }

    @Test func chunkEndingMidLineIsNotALineStart() {
        let (out, _) = stuff(["abc", ".def\r\n"])
        #expect(out == "abc.def\r\n")
    }

    @Test func firstByteOfContentIsALineStart() {
        let (out, _) = stuff([".", ".", "\r\n"])
        #expect(out == "...\r\n")
        let (one, term) = stuff(["."])
        #expect(one == "..")
        #expect(term == "\r\n.\r\n")
    }

    @Test func terminator() {
        #expect(stuff(["a\r\n"]).1 == ".\r\n")
        #expect(stuff(["a"]).1 == "\r\n.\r\n")
        #expect(stuff(["a\r\nb"]).1 == "\r\n.\r\n")
        #expect(stuff([]).1 == ".\r\n")
        #expect(stuff(["a\r\n", ""]).1 == ".\r\n")
    }

    @Test func roundTripThroughDataReader() {
        let lines = ["Subject: dots", "", ".", "..", ".leading", "middle.dot", "...", "end"]
        let content = lines.map { $0 + "\r\n" }.joined()
        // Split the content into awkward chunks: every 3 octets.
        let bytes = Array(content.utf8)
        var stuffer = DotStuffer()
        var wire = ByteBuffer()
        var i = 0
        while i < bytes.count {
            stuffer.stuff(ByteBuffer(bytes: bytes[i..<min(i + 3, bytes.count)]), into: &wire)
            i += 3
        }
        wire.writeString(stuffer.terminator())
        let r = readData(String(buffer: wire))
        #expect(r.events == [.content("Subject: dots"), .headers] + lines.dropFirst().map { Ev.content($0) } + [.end])
        #expect(r.reader.problem == nil)
        #expect(r.reader.size == content.utf8.count)
    }
}
