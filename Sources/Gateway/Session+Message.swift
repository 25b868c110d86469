import Foundation
import NIOCore
import SMTPProtocol
import PolicyEngine

/// The DATA phase: the framer's pieces of text (many lines each) through the DataReader (dot-unstuffing, bare CR
/// and LF, line length) into the one `MessageIntake` (headers, DKIM, the forged
/// Authentication-Results filter, the spool), bounded by the per-line timeout and
/// dataDeadline.
extension Session {
    /// Starts the transaction's message: its facts, its spool and the intake that fills it.
    func startMessage() -> (MessageIntake, MessageSpool) {
        let spool = MessageSpool(directory: shared.config.spoolDirectory, memoryLimit: shared.config.spoolMemoryLimit)
        message = MessageFacts()
        self.spool = spool
        let intake = MessageIntake(checks: policy.checks, authservIDs: shared.authservIDs, maxMessageSize: listener.maxMessageOctets,
                                   keep: { spool.appendLine($0) })
        return (intake, spool)
    }

    func receiveMessage(_ inbound: inout Inbound) async {
        let (intake, spool) = startMessage()
        var reader = DataReader(maxLineLength: 1000)
        let started = ContinuousClock.now
        while machine.phase == .data {
            switch await nextOfMessage(&inbound, since: started) {
            case .success(.text(let lines)):
                for line in lines {
                    switch reader.step(line) {
                    case .none: break
                    case .content(let buf): intake.line(buf, size: reader.size)
                    case .headersComplete(let buf):
                        await take(.headersComplete, reader: reader, intake: intake)
                        if machine.phase != .data { return }
                        intake.line(buf, size: reader.size)
                    case .end:
                        await feed(.dataEnded(await endOfMessage(reader: reader, intake: intake, spool: spool)))
                        return
                    }
                }
            case .success(.line):
                // Framed as a command: sent after DATA before its 354 (RFC 2920), or a BDAT
                // line read before it. Never guess how it was meant.
                await feed(.improperPipelining)
                return
            case let other:
                await feed(Self.event(other))
                return
            }
        }
    }

    /// One event of the reader: content into the intake; at the end of the header section,
    /// the data stage.
    func take(_ e: DataReader.Event, reader: DataReader, intake: MessageIntake) async {
        switch e {
        case .content(let buf):
            intake.line(buf, size: reader.size)
        case .headersComplete:
            intake.endHeaders()
            message?.headers = intake.headers
            message?.size = reader.size
            await feed(.headersComplete)
        case .end:
            break
        }
    }

    /// The whole message is in: the facts the message stage sees, and what the machine
    /// needs to know of it.
    func endOfMessage(reader: DataReader, intake: MessageIntake, spool: MessageSpool) async -> SMTPDataSummary {
        let streamed = await intake.finish()
        spool.flush()
        message?.headers = intake.headers
        message?.size = reader.size
        message?.truncated = intake.truncated
        if !intake.headerTooLarge { message?.streamed = streamed }
        if intake.droppedAuthenticationResults > 0 {
            let n = intake.droppedAuthenticationResults
            logDecision(SMTPDecision(stage: .message, check: "headers", result: "removed", action: "continue", reply: nil,
                                     reason: "removed \(n) Authentication-Results field\(n == 1 ? "" : "s") claiming to be from \(helloName)",
                                     sender: machine.transaction?.sender))
        }
        return summary(reader: reader, intake: intake, spool: spool)
    }

    /// What the machine needs to know of the message so far (all of it, at its end).
    func summary(reader: DataReader, intake: MessageIntake, spool: MessageSpool) -> SMTPDataSummary {
        var s = SMTPDataSummary()
        s.size = reader.size
        s.problem = reader.problem.map { ($0.name, $0.reply) }
        s.headerTooLarge = intake.headerTooLarge
        s.truncated = intake.truncated
        if spool.failed != 0 { s.spoolError = String(cString: strerror(spool.failed)) }
        return s
    }
}
