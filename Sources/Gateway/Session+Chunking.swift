import Foundation
import NIOCore
import SMTPProtocol
import PolicyEngine

/// A message arriving in BDAT chunks (RFC 3030): one intake and spool from the first chunk
/// to the last, the chunks' octets re-split into lines by a `ChunkReader`.
final class ChunkedMessage {
    var reader = ChunkReader(maxLineLength: 1000)
    let intake: MessageIntake
    let spool: MessageSpool
    /// dataDeadline counts from the first chunk, across all of them.
    let started = ContinuousClock.now

    init(intake: MessageIntake, spool: MessageSpool) {
        self.intake = intake
        self.spool = spool
    }
}

extension Session {
    /// Reads the chunk the machine asked for: into the message, or thrown away; then
    /// tells the machine the chunk has ended.
    func receiveChunk(_ inbound: inout Inbound) async {
        guard let c = machine.chunk else {
            // Phase chunk with no chunk to read: a bug; never spin on it.
            await feed(.closed(byServer: false, detail: "internal error: no BDAT chunk to read"))
            return
        }
        let kept: ChunkedMessage? = machine.chunkKept ? (chunks ?? startChunks()) : nil
        let started = kept?.started ?? ContinuousClock.now
        var remaining = c.size
        while remaining > 0 {
            switch await nextOfMessage(&inbound, since: started) {
            case .success(.chunk(let piece)):
                remaining -= piece.readableBytes
                if let kept { await take(piece, into: kept) }
            case .success(.line), .success(.text), .success(.tls):
                // The framer hands on exactly the chunk's octets: anything else here is a bug.
                await feed(.closed(byServer: false, detail: "internal error: BDAT chunk cut short"))
                return
            case .failure(let ended):
                await feed(ended.event)
                return
            }
        }
        guard let kept else { await feed(.chunkEnded(SMTPDataSummary())); return }
        if c.last {
            for e in kept.reader.finish() { await take(e, reader: kept.reader.reader, intake: kept.intake) }
            await feed(.chunkEnded(await endOfMessage(reader: kept.reader.reader, intake: kept.intake, spool: kept.spool)))
        } else {
            // A message already refused for its text is refused now, not after the rest.
            await feed(.chunkEnded(summary(reader: kept.reader.reader, intake: kept.intake, spool: kept.spool)))
        }
    }

    func startChunks() -> ChunkedMessage {
        let (intake, spool) = startMessage()
        let m = ChunkedMessage(intake: intake, spool: spool)
        chunks = m
        return m
    }

    func take(_ piece: ByteBuffer, into m: ChunkedMessage) async {
        m.reader.append(piece)
        // Line by line, so the intake sees each line's own running size.
        while let events = m.reader.nextLine() {
            for e in events { await take(e, reader: m.reader.reader, intake: m.intake) }
        }
    }
}
