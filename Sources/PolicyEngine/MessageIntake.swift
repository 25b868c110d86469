import NIOCore
import SMTPProtocol

/// The one way a message's content comes in, for the gateway and the simulator alike: the
/// header section is gathered field by field (bounded; dropped fields count), incoming
/// `Authentication-Results` fields that claim to be ours are removed (RFC 8601 §5), each
/// kept field is parsed for the checks, shown to the streaming checks (DKIM) and handed to
/// `keep` (the spool); the body goes to the observers in chunks and to `keep` line by line.
/// Past `maxMessageSize` nothing more is kept or observed (`truncated`).
public final class MessageIntake {
    public let maxMessageSize: Int
    let authservIDs: Set<String>
    let observers: [(String, MessageObserver)]
    let keep: (ByteBuffer) -> Void
    var assembler: HeaderFieldAssembler
    /// The kept header fields, unfolded.
    public private(set) var headers: [HeaderField] = []
    /// Incoming Authentication-Results fields removed as forged.
    public private(set) var droppedAuthenticationResults = 0
    public private(set) var truncated = false
    public private(set) var inHeaders = true
    var separatorSeen = false
    var bodyChunk: [UInt8] = []
    static let chunkOctets = 64 * 1024

    /// `maxMessageSize` 0 = unlimited; `authservIDs` normalised (see `AuthenticationResults`).
    public init(checks: [PolicyCheck], authservIDs: Set<String>, maxMessageSize: Int,
                maxHeaderOctets: Int = SMTPServerStateMachine.maxHeaderOctets, keep: @escaping (ByteBuffer) -> Void = { _ in }) {
        self.observers = checks.compactMap { pc in (pc.check as? StreamingCheck).map { ($0.name, $0.makeObserver()) } }
        self.authservIDs = authservIDs
        self.maxMessageSize = maxMessageSize
        self.assembler = HeaderFieldAssembler(maxOctets: maxHeaderOctets)
        self.keep = keep
    }

    public var headerTooLarge: Bool { assembler.tooLarge }

    /// One line of content (dot-unstuffed, without its CRLF); `size` is the content's
    /// octets so far, this line included.
    public func line(_ buf: ByteBuffer, size: Int) {
        let l = buf.readableBytesView
        if maxMessageSize > 0 && size > maxMessageSize { truncated = true }
        if inHeaders {
            if l.isEmpty {
                endHeaders()
            } else {
                if let f = assembler.feed(l) { take(f) }
                return
            }
        }
        if truncated { return }
        if !observers.isEmpty {
            if !separatorSeen {
                separatorSeen = true
            } else {
                bodyChunk.append(contentsOf: l)
                bodyChunk.append(13)
                bodyChunk.append(10)
                if bodyChunk.count >= Self.chunkOctets { flushBody() }
            }
        }
        keep(buf)
    }

    /// The end of the header section (the empty line, or the end of data without one).
    public func endHeaders() {
        guard inHeaders else { return }
        inHeaders = false
        if let f = assembler.finish() { take(f) }
        if !truncated && !assembler.tooLarge { for (_, o) in observers { o.endOfHeaders() } }
    }

    /// At the final dot: what each streaming check found, by its name.
    public func finish() async -> [String: any Sendable] {
        endHeaders()
        var out: [String: any Sendable] = [:]
        guard !observers.isEmpty && !assembler.tooLarge else { return out }
        flushBody()
        for (name, o) in observers { out[name] = await o.finish() }
        return out
    }

    func take(_ field: [UInt8]) {
        if AuthenticationResults.claims(field, authservIDs: authservIDs) { droppedAuthenticationResults += 1; return }
        if let h = HeaderField.parse(field) { headers.append(h) }
        if truncated { return }
        for (_, o) in observers { o.header(field) }
        keep(ByteBuffer(bytes: field))
    }

    func flushBody() {
        guard !bodyChunk.isEmpty else { return }
        for (_, o) in observers { o.body(bodyChunk) }
        bodyChunk.removeAll(keepingCapacity: true)
    }
}
