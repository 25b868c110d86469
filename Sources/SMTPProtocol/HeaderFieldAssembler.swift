/// Gathers the lines of a header section into whole fields (RFC 5322 §2.2.3: a line that
/// starts with a space or a tab continues the field before it). One field is held at a
/// time; every octet counts toward `maxOctets`, and past it `tooLarge` is set and nothing
/// more is held, so a field with endless continuation lines cannot grow memory.
public struct HeaderFieldAssembler: Sendable {
    public let maxOctets: Int
    /// Octets of header lines seen, CRLFs counted.
    public private(set) var octets = 0
    public private(set) var tooLarge = false
    /// The field being gathered: its lines joined with CRLF, without the final CRLF.
    private var current: [UInt8] = []

    public init(maxOctets: Int) {
        self.maxOctets = maxOctets
    }

    /// Feeds one header line without its CRLF; returns the field this line completes, if any.
    public mutating func feed<C: Collection>(_ line: C) -> [UInt8]? where C.Element == UInt8 {
        octets += line.count + 2
        if octets > maxOctets {
            tooLarge = true
            current = []
        }
        if tooLarge { return nil }
        let first = line.first
        if (first == 0x20 || first == 0x09) && !current.isEmpty {
            current.append(13)
            current.append(10)
            current.append(contentsOf: line)
            return nil
        }
        let done = current.isEmpty ? nil : current
        current = Array(line)
        return done
    }

    /// The last field, at the end of the header section.
    public mutating func finish() -> [UInt8]? {
        defer { current = [] }
        return current.isEmpty || tooLarge ? nil : current
    }
}
