/// `BDAT <chunk-size> [LAST]` (RFC 3030 §2): the one reading of a BDAT command line, used
/// by the inbound framer to decide that raw octets follow. The state machine takes the
/// framer's reading from the line (`SMTPLine.chunk`) and never parses BDAT again, so the
/// two cannot disagree about where a chunk begins.
public struct BDATCommand: Sendable, Hashable {
    /// Octets of message data that follow the command line.
    public var size: Int
    /// The last chunk of the message.
    public var last: Bool

    public init(size: Int, last: Bool) {
        self.size = size
        self.last = last
    }

    /// The most digits a chunk size may have: 18 fit an `Int` with room to add sizes.
    public static let maxSizeDigits = 18

    /// Reads a command line without its line ending: `BDAT`, one space, 1 to 18 digits,
    /// optionally one space and `LAST` (verb and keyword in any case), optionally trailing
    /// spaces. Anything else (including a longer size) is not a BDAT command with a chunk.
    public init?<Bytes: Sequence>(line: Bytes) where Bytes.Element == UInt8 {
        let bytes = Array(line)
        guard Self.startsWith(bytes, "BDAT ") else { return nil }
        var i = 5
        var size = 0
        while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57, i - 5 < Self.maxSizeDigits {
            size = size * 10 + Int(bytes[i] - 48)
            i += 1
        }
        guard i > 5, i == bytes.count || !(bytes[i] >= 48 && bytes[i] <= 57) else { return nil }
        var last = false
        if Self.startsWith(bytes[i...], " LAST") {
            last = true
            i += 5
        }
        guard bytes[i...].allSatisfy({ $0 == 32 }) else { return nil }
        self.init(size: size, last: last)
    }

    /// `bytes` begins with `word`, ASCII letters compared without case.
    private static func startsWith(_ bytes: ArraySlice<UInt8>, _ word: String) -> Bool {
        guard bytes.count >= word.utf8.count else { return false }
        return zip(bytes, word.utf8).allSatisfy { Self.folded($0) == Self.folded($1) }
    }
    private static func startsWith(_ bytes: [UInt8], _ word: String) -> Bool { startsWith(bytes[...], word) }
    private static func folded(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b | 0x20 : b }
}
