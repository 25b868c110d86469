import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// One line from the client, without its line ending.
public struct SMTPLine: Sendable, Equatable {
    public enum Ending: Sendable, Equatable {
        /// `<CRLF>`, the only line ending SMTP knows.
        case crlf
        /// A bare `<LF>` with no CR before it.
        case bareLF
    }

    /// The line's bytes without the ending; truncated to the framer's limit when `overflow`.
    public var bytes: ByteBuffer
    public var ending: Ending
    /// The length of the whole line on the wire, ending included. For an overlong line that
    /// spanned several reads (its excess discarded unread) this is limit + 1; for one that
    /// arrived in a single read it is the true length. Either way it exceeds the limit.
    /// An overlong line keeps only its first `SMTPLineFramer.overflowHead` octets.
    public var wireLength: Int
    /// True when the line was longer than the framer's limit.
    public var overflow: Bool
    /// Set by the inbound framer on a well-formed BDAT command line: exactly `size` octets
    /// of chunk data follow it on the stream.
    public var chunk: BDATCommand?
    /// Set by the inbound framer on a line that came after a DATA command line before the
    /// server had answered it: message text sent before the 354 (improper pipelining).
    public var pipelinedAfterData = false

    public init(bytes: ByteBuffer, ending: Ending, wireLength: Int, overflow: Bool, chunk: BDATCommand? = nil) {
        self.bytes = bytes
        self.ending = ending
        self.wireLength = wireLength
        self.overflow = overflow
        self.chunk = chunk
    }

    /// True when a CR stands anywhere but right before the final LF.
    public var containsBareCR: Bool { contains(13) }
    public var containsNUL: Bool { contains(0) }

    private func contains(_ octet: UInt8) -> Bool {
        bytes.withUnsafeReadableBytes { p in
            guard let base = p.baseAddress, p.count > 0 else { return false }
            return memchr(base, Int32(octet), p.count) != nil
        }
    }

    /// The line with its bytes copied into storage of their own size.
    func owningItsBytes() -> SMTPLine {
        var l = self
        var b = ByteBufferAllocator().buffer(capacity: bytes.readableBytes)
        b.writeImmutableBuffer(bytes)
        l.bytes = b
        return l
    }
}

/// Splits the inbound byte stream at LF into `SMTPLine`s. Memory is bounded: a line longer
/// than `maxLineLength` octets is not buffered; its excess is dropped and the line is
/// delivered with `overflow` set once its LF arrives, holding only its first
/// `overflowHead` octets. Every line is copied out of the read buffer into storage of its
/// own size, so a queued line never keeps a whole read buffer alive: the octets queued
/// per connection are bounded by the lines queued times `maxLineLength`.
public struct SMTPLineFramer: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = SMTPLine

    public let maxLineLength: Int
    /// How much of an overlong line is kept (for the log).
    public static let overflowHead = 64
    private var discarding = false
    private var discardedHead: ByteBuffer?
    /// The last byte thrown away while discarding, to tell CRLF from a bare LF when the LF
    /// arrives first in the next read.
    private var lastDiscarded: UInt8 = 0
    private var searchedUpTo = 0

    /// - Parameter maxLineLength: the longest line kept, CRLF included (1000 for SMTP text
    ///   lines; command lines are checked against their own 512 limit by the session).
    public init(maxLineLength: Int = 1000) {
        self.maxLineLength = maxLineLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let line = nextLine(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial line at EOF is not a command; drop it.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.clear()
        return .needMoreData
    }

    /// The framing itself, usable without a channel (tests, fuzzing).
    public mutating func nextLine(_ buffer: inout ByteBuffer) -> SMTPLine? {
        nextLine(&buffer, copy: true)
    }

    /// The lines that have arrived, in order, until their octets reach `limit` (at least
    /// one line, if there is one) or `stop` says a line is the last. Their octets are copied
    /// into one buffer of their own, which the lines share.
    public mutating func nextLines(_ buffer: inout ByteBuffer, upTo limit: Int, stop: (SMTPLine) -> Bool) -> [SMTPLine] {
        var found: [SMTPLine] = []
        var octets = 0
        while octets < limit, let line = nextLine(&buffer, copy: false) {
            octets += line.bytes.readableBytes
            found.append(line)
            if stop(line) { break }
        }
        guard found.count > 1 else { return found.map { $0.owningItsBytes() } }
        // All the octets first, then the slices: a slice taken while writing would make
        // every later write copy the buffer.
        var shared = ByteBufferAllocator().buffer(capacity: octets)
        for line in found { shared.writeImmutableBuffer(line.bytes) }
        var at = shared.readerIndex
        for i in found.indices {
            let n = found[i].bytes.readableBytes
            found[i].bytes = shared.getSlice(at: at, length: n) ?? ByteBuffer()
            at += n
        }
        return found
    }

    /// `copy` false: the line's bytes are a slice of `buffer` (keeping its storage alive).
    mutating func nextLine(_ buffer: inout ByteBuffer, copy: Bool) -> SMTPLine? {
        let view = buffer.readableBytesView
        let start = view.startIndex + min(searchedUpTo, view.count)
        if let lf = view[start...].firstIndex(of: 10) {
            let length = lf - view.startIndex + 1
            searchedUpTo = 0
            if discarding {
                discarding = false
                let head = discardedHead ?? ByteBuffer()
                discardedHead = nil
                let beforeLF = lf > view.startIndex ? view[lf - 1] : lastDiscarded
                buffer.moveReaderIndex(forwardBy: length)
                return SMTPLine(bytes: head, ending: beforeLF == 13 ? .crlf : .bareLF, wireLength: maxLineLength + 1, overflow: true)
            }
            let beforeLF = lf > view.startIndex ? view[lf - 1] : 0
            let ending: SMTPLine.Ending = beforeLF == 13 ? .crlf : .bareLF
            let contentLength = length - (ending == .crlf ? 2 : 1)
            let overflow = length > maxLineLength
            let kept = overflow ? min(contentLength, headLength) : contentLength
            let line = copy ? Self.copy(view[view.startIndex..<(view.startIndex + kept)])
                : buffer.getSlice(at: buffer.readerIndex, length: kept) ?? ByteBuffer()
            buffer.moveReaderIndex(forwardBy: length)
            return SMTPLine(bytes: line, ending: ending, wireLength: length, overflow: overflow)
        }
        // No LF yet.
        if view.count > maxLineLength, let last = view.last {
            if !discarding {
                discarding = true
                discardedHead = Self.copy(view.prefix(headLength))
            }
            lastDiscarded = last
            buffer.moveReaderIndex(forwardBy: view.count)
            buffer.discardReadBytes()
            searchedUpTo = 0
        } else {
            searchedUpTo = view.count
        }
        return nil
    }

    /// The partial line left when the input ends without a line ending (the last line of a
    /// BDAT message), as if a CRLF followed it; nil when nothing is left.
    public mutating func flush(_ buffer: inout ByteBuffer) -> SMTPLine? {
        defer {
            buffer.clear()
            discarding = false
            discardedHead = nil
            searchedUpTo = 0
        }
        if discarding {
            return SMTPLine(bytes: discardedHead ?? ByteBuffer(), ending: .crlf, wireLength: maxLineLength + 1, overflow: true)
        }
        let view = buffer.readableBytesView
        guard !view.isEmpty else { return nil }
        let overflow = view.count + 2 > maxLineLength
        let line = Self.copy(view.prefix(overflow ? headLength : view.count))
        return SMTPLine(bytes: line, ending: .crlf, wireLength: view.count + 2, overflow: overflow)
    }

    /// What is kept of an overlong line: its first octets, never more than the limit.
    private var headLength: Int { min(Self.overflowHead, maxLineLength) }

    private static func copy(_ bytes: ByteBufferView.SubSequence) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        return b
    }
}
