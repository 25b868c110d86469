import NIOCore

/// What the inbound framer hands the session, in stream order.
public enum SMTPInbound: Sendable, Equatable {
    /// A command line.
    case line(SMTPLine)
    /// Lines of DATA's message text, in order, as many as have arrived, up to
    /// `SMTPInboundFramer.maxPiece` octets (always at least one line); the last may be the
    /// end-of-data line. Their octets share one buffer of their own.
    case text([SMTPLine])
    /// Octets of the BDAT chunk announced by the last line (`SMTPLine.chunk`), in order,
    /// at most `SMTPInboundFramer.maxPiece` at a time; together exactly the chunk's size.
    case chunk(ByteBuffer)
    /// The TLS handshake that followed STARTTLS's 220 (or began the connection) is done;
    /// what comes next arrived encrypted.
    case tls(SMTPTLSInfo)
}

/// Splits the inbound stream into command lines, DATA's lines and BDAT chunks
/// (RFC 3030). Chunk data cannot be told from lines by looking at it, so the framer
/// decides at once, as each line arrives, whether raw octets follow: a well-formed BDAT
/// command line read as a command (`BDATCommand`) switches it to chunk mode for exactly
/// the announced size, and the line carries that reading to the state machine. A BDAT
/// line inside DATA's message is text: the framer learns that DATA's message is coming
/// from the server's own 354 (`dataReplySent`) and leaves it at the same end-of-data line
/// the DATA reader stops at (`DataTerminator`).
///
/// Lines that arrive after a DATA command line and before the server has answered it are
/// marked `pipelinedAfterData`: RFC 2920 makes DATA the last command of a group, so such a
/// line read as message text means the client did not wait for the 354; the session
/// refuses it rather than guess how it was framed.
///
/// A STARTTLS command line stops the framer (`held`): nothing after it is framed until
/// the server has answered it. If the answer starts TLS, the octets that came after it are
/// thrown away unread with `reset` (CVE-2011-0411: they were sent in plaintext before the
/// handshake); any other answer releases them (`release`) and framing goes on.
///
/// Memory: a line is bounded as in `SMTPLineFramer`; DATA's text and chunk data are
/// copied out in pieces of at most `maxPiece` octets (a text piece: whole lines, at least
/// one), so each item handed on holds at most `maxPiece` + one line's octets.
public struct SMTPInboundFramer: Sendable {
    public static let maxPiece = 8192
    /// The longest command line (RFC 5321 §4.5.3.1.4), CRLF included.
    public static let maxCommandLength = 512

    enum Mode: Sendable, Equatable {
        case commands
        case data(DataTerminator)
        case chunk(remaining: Int)
        /// After a STARTTLS line, until the server has answered it.
        case held
    }

    private var lines: SMTPLineFramer
    private(set) var mode = Mode.commands
    private var dataUnanswered = false

    public init(maxLineLength: Int = 1000) {
        lines = SMTPLineFramer(maxLineLength: maxLineLength)
    }

    /// True while chunk data is being handed on.
    public var inChunk: Bool { if case .chunk = mode { return true } else { return false } }

    /// The next line is read as a command (not message text, chunk data, or held).
    public var readingCommands: Bool { mode == .commands }

    /// True from a STARTTLS command line until `release` or `reset`.
    public var held: Bool { mode == .held }

    /// The next item from `buffer`, or nil when more input is needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> SMTPInbound? {
        switch mode {
        case .held:
            return nil
        case .chunk(let remaining):
            let n = min(remaining, buffer.readableBytes, Self.maxPiece)
            guard n > 0, let piece = buffer.readSlice(length: n) else { return nil }
            mode = remaining == n ? .commands : .chunk(remaining: remaining - n)
            var copy = ByteBufferAllocator().buffer(capacity: n)
            copy.writeImmutableBuffer(piece)
            return .chunk(copy)
        case .data(var terminator):
            var ended = false
            let text = lines.nextLines(&buffer, upTo: Self.maxPiece) { line in
                ended = terminator.ends(line)
                return ended
            }
            guard !text.isEmpty else { return nil }
            mode = ended ? .commands : .data(terminator)
            return .text(text)
        case .commands:
            guard var line = lines.nextLine(&buffer) else { return nil }
            line.pipelinedAfterData = dataUnanswered
            if Self.isDataCommand(line) { dataUnanswered = true }
            if Self.hasVerb(line, "STARTTLS") { mode = .held }
            if !line.overflow, line.wireLength <= Self.maxCommandLength, let c = BDATCommand(line: line.bytes.readableBytesView) {
                line.chunk = c
                if c.size > 0 { mode = .chunk(remaining: c.size) }
            }
            return .line(line)
        }
    }

    /// The server sent 354: DATA's message text follows. Only the answer to a DATA line
    /// counts: a 354 with no DATA waiting for its answer is ignored.
    public mutating func dataReplySent() {
        guard dataUnanswered else { return }
        dataUnanswered = false
        mode = .data(DataTerminator())
    }

    /// STARTTLS was refused: frame what followed it as usual.
    public mutating func release() {
        if mode == .held { mode = .commands }
    }

    /// Forgets everything framed so far and starts over in command mode (for STARTTLS:
    /// nothing sent before the handshake may be read after it).
    public mutating func reset() {
        self = SMTPInboundFramer(maxLineLength: lines.maxLineLength)
    }

    /// `BDAT` alone or with anything after a space: a line the machine must not answer as
    /// a command unless the framer read it as one with its chunk.
    public static func isBDATCommand(_ line: SMTPLine) -> Bool { hasVerb(line, "BDAT") }

    /// `DATA` alone or with anything after a space: wider than what the parser accepts,
    /// so that no DATA the server could answer with 354 goes unnoticed.
    static func isDataCommand(_ line: SMTPLine) -> Bool { hasVerb(line, "DATA") }

    /// `verb` (upper case ASCII) alone or followed by a space, in any case.
    public static func hasVerb(_ line: SMTPLine, _ verb: String) -> Bool {
        let v = line.bytes.readableBytesView
        let n = verb.utf8.count
        guard v.count >= n else { return false }
        let head = v.prefix(n).map { $0 >= 97 && $0 <= 122 ? $0 - 32 : $0 }
        return head.elementsEqual(verb.utf8) && (v.count == n || v.dropFirst(n).first == 32)
    }
}
