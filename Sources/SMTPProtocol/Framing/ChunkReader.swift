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

    /// Takes chunk octets; returns the events of the lines they completed.
    public mutating func feed(_ piece: ByteBuffer) -> [DataReader.Event] {
        var piece = piece
        pending.writeBuffer(&piece)
        var events: [DataReader.Event] = []
        while let line = lines.nextLine(&pending) { events += reader.feed(line) }
        if pending.readerIndex > 4096 { pending.discardReadBytes() }
        return events
    }

    /// The last chunk is in: the events of a last line without its CRLF, if any.
    public mutating func finish() -> [DataReader.Event] {
        guard let line = lines.flush(&pending) else { return [] }
        return reader.feed(line)
    }
}
