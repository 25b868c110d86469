import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Reads the DATA phase line by line (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8).
///
/// Only `<CRLF>.<CRLF>` ends the data: a `.` line that follows or carries a bare LF does not,
/// so a client cannot smuggle a second message past a downstream that reads line endings
/// differently. Any bare LF, bare CR or NUL marks the message as refused; the reader keeps
/// consuming until the real end so that the session stays in step with the client, and
/// nothing of such a message is ever forwarded.
public struct DataReader: Sendable {
    public enum Problem: Sendable, Equatable {
        case bareLF, bareCR, nul, lineTooLong

        public var reply: SMTPReply {
            switch self {
            case .bareLF: return SMTPReply(550, "5.6.0", "Message refused: bare LF in message text (RFC 5321 2.3.8)")
            case .bareCR: return SMTPReply(550, "5.6.0", "Message refused: bare CR in message text (RFC 5321 2.3.8)")
            case .nul: return SMTPReply(550, "5.6.0", "Message refused: NUL octet in message text")
            case .lineTooLong: return SMTPReply(500, "5.5.2", "Message refused: line longer than 1000 octets (RFC 5321 4.5.3.1.6)")
            }
        }
        public var name: String {
            switch self {
            case .bareLF: return "bare-lf"
            case .bareCR: return "bare-cr"
            case .nul: return "nul"
            case .lineTooLong: return "line-too-long"
            }
        }
    }

    public enum Event: Sendable, Equatable {
        /// Message content: one unstuffed line with its CRLF.
        case content(ByteBuffer)
        /// The empty line between header and body was just seen (it is also delivered as
        /// content right after this event).
        case headersComplete
        /// `<CRLF>.<CRLF>`: end of data.
        case end
    }

    /// How the message arrives.
    public enum Framing: Sendable, Equatable {
        /// After DATA: dot-stuffed, ended by `<CRLF>.<CRLF>`.
        case dotStuffed
        /// In BDAT chunks (RFC 3030): taken as it is; the chunk sizes end it, never a dot.
        case chunked
    }

    public let maxLineLength: Int
    public let framing: Framing
    public private(set) var problem: Problem?
    public private(set) var inHeader = true
    /// Octets of unstuffed content so far (CRLF counted as two).
    public private(set) var size = 0
    private var terminator = DataTerminator()

    public init(maxLineLength: Int = 1000, framing: Framing = .dotStuffed) {
        self.maxLineLength = maxLineLength
        self.framing = framing
    }

    /// What one line gave, without an array: `step` is the reader's hot path.
    public enum Step: Sendable, Equatable {
        /// Nothing to hand on (a refused message's line).
        case none
        case content(ByteBuffer)
        /// The empty line between header and body (its content, empty, comes with it).
        case headersComplete(ByteBuffer)
        case end
    }

    /// Feeds one line; returns up to two events in order. `terminated` false for a last
    /// chunked line the client sent without CRLF: its size has no CRLF counted.
    public mutating func feed(_ line: SMTPLine, terminated: Bool = true) -> [Event] {
        switch step(line, terminated: terminated) {
        case .none: return []
        case .content(let b): return [.content(b)]
        case .headersComplete(let b): return [.headersComplete, .content(b)]
        case .end: return [.end]
        }
    }

    /// Feeds one line; what it gave.
    public mutating func step(_ line: SMTPLine, terminated: Bool = true) -> Step {
        if framing == .dotStuffed && terminator.ends(line) { return .end }
        if problem == nil {
            if line.ending == .bareLF { problem = .bareLF }
            else if line.overflow || line.wireLength > maxLineLength { problem = .lineTooLong }
            else if line.containsBareCR { problem = .bareCR }
            else if line.containsNUL { problem = .nul }
        }
        var content = line.bytes
        if framing == .dotStuffed && content.readableBytesView.first == UInt8(ascii: ".") { content.moveReaderIndex(forwardBy: 1) }
        size += content.readableBytes + (terminated ? 2 : 0)
        if problem != nil { return .none }
        if inHeader && content.readableBytes == 0 {
            inHeader = false
            return .headersComplete(content)
        }
        return .content(content)
    }
}

/// Where DATA's message ends: a `.` line with CRLF after a line that also ended with CRLF.
/// The DATA reader and the inbound framer use this one test, so they always agree on
/// which line ends the message.
public struct DataTerminator: Sendable, Equatable {
    private var previousEndedWithCRLF = true
    public init() {}

    /// Takes the next line of the message; true when it is the end-of-data line.
    public mutating func ends(_ line: SMTPLine) -> Bool {
        let view = line.bytes.readableBytesView
        if line.ending == .crlf, previousEndedWithCRLF, !line.overflow, view.count == 1, view.first == UInt8(ascii: ".") {
            return true
        }
        previousEndedWithCRLF = line.ending == .crlf
        return false
    }
}

/// Dot-stuffs message content for the wire (the inverse of `DataReader`). Content is given
/// in arbitrary chunks; line starts are tracked across chunks.
public struct DotStuffer: Sendable {
    private var atLineStart = true
    private var previous: UInt8 = 0
    private var endsWithCRLF = true
    public init() {}

    public mutating func stuff(_ chunk: ByteBuffer, into out: inout ByteBuffer) {
        let count = chunk.readableBytes
        guard count > 0 else { return }
        chunk.withUnsafeReadableBytes { p in
            guard let base = p.baseAddress else { return }
            // Only a line's first octet can need a dot: look at the octet after each LF.
            var runStart = 0
            var lineStart = atLineStart ? 0 : -1
            while true {
                if lineStart >= 0 && lineStart < count && p[lineStart] == UInt8(ascii: ".") {
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: p[runStart..<lineStart]))
                    out.writeInteger(UInt8(ascii: "."))
                    runStart = lineStart
                }
                guard lineStart < count else { break }
                let from = max(lineStart, 0)
                guard let lf = memchr(base + from, 10, count - from) else { break }
                lineStart = base.distance(to: UnsafeRawPointer(lf)) + 1
            }
            out.writeBytes(UnsafeRawBufferPointer(rebasing: p[runStart..<count]))
            let last = p[count - 1]
            endsWithCRLF = last == 10 && (count > 1 ? p[count - 2] : previous) == 13
            atLineStart = last == 10
            previous = last
        }
    }

    /// The end-of-data marker; adds a CRLF first if the content did not end with one.
    public func terminator() -> String { endsWithCRLF ? ".\r\n" : "\r\n.\r\n" }
}
