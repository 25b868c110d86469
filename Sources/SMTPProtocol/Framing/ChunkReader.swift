import NIOCore

/// Reads a message sent in BDAT chunks (RFC 3030) as the same lines and events the DATA
/// reader gives: chunk boundaries fall anywhere, so the chunks' octets are re-split into
/// lines here, then checked exactly as DATA's are (bare CR, bare LF, NUL, line length),
/// without dot-unstuffing and without an end-of-data dot. A last line without CRLF is
/// taken as if it had one.
public struct ChunkReader: Sendable {
    public private(set) var reader: DataReader
    private var lines: SMTPLineFramer
    private var pending = ByteBuffer()

    public init(maxLineLength: Int = 1000) {
        reader = DataReader(maxLineLength: maxLineLength, framing: .chunked)
        lines = SMTPLineFramer(maxLineLength: maxLineLength)
    }

    /// Takes chunk octets; their lines are read with `nextLine()`.
    public mutating func append(_ piece: ByteBuffer) {
        var piece = piece
        pending.writeBuffer(&piece)
    }

    /// The events of the next complete line, or nil when no whole line is left. One line at
    /// a time, so that `reader.size` after each call counts the content up to that line.
    public mutating func nextLine() -> [DataReader.Event]? {
        guard let line = lines.nextLine(&pending) else {
            if pending.readerIndex > 4096 { pending.discardReadBytes() }
            return nil
        }
        return reader.feed(line)
    }

    /// Takes chunk octets; returns the events of all the lines they completed.
    public mutating func feed(_ piece: ByteBuffer) -> [DataReader.Event] {
        append(piece)
        var events: [DataReader.Event] = []
        while let e = nextLine() { events += e }
        return events
    }

    /// The last chunk is in: the events of a last line without its CRLF, if any (its size
    /// counted as sent, without a CRLF).
    public mutating func finish() -> [DataReader.Event] {
        guard let line = lines.flush(&pending) else { return [] }
        return reader.feed(line, terminated: false)
    }
}
