import Testing
@testable import SMTPProtocol

/// `HeaderField.parse`: the name and the unfolded value of one whole field.
@Suite struct HeaderFieldParseTests {
    func parse(_ s: String) -> HeaderField? { HeaderField.parse(Array(s.utf8)) }

    @Test func aPlainField() {
        #expect(parse("Subject: hello world\r\n") == HeaderField("Subject", "hello world"))
    }

    @Test func foldedLinesAreJoinedByOneSpace() {
        #expect(parse("Subject:  one\r\n\t two \r\n   three\r\n") == HeaderField("Subject", "one two three"))
    }

    @Test func blankContinuationLinesAndAnEmptyValueVanish() {
        #expect(parse("X-A: a\r\n \r\n\tb\r\n") == HeaderField("X-A", "a b"))
        #expect(parse("X-Empty:\r\n") == HeaderField("X-Empty", ""))
        #expect(parse("X-Empty:") == HeaderField("X-Empty", ""))
        #expect(parse(" X-Spaced \t: v") == HeaderField("X-Spaced", "v"))
    }

    @Test func noColonIsNoField() {
        #expect(parse("just text\r\n") == nil)
        #expect(parse("") == nil)
    }

    @Test func nonUTF8OctetsBecomeReplacementCharacters() {
        #expect(HeaderField.parse([88, 58, 32, 0xff, 65]) == HeaderField("X", "\u{FFFD}A"))
    }

    @Test func aCollectionWithoutContiguousStorageParsesTheSame() {
        let raw = Array("Received: from a\r\n\tby b\r\n".utf8)
        let lazy = raw.lazy.map { $0 }
        #expect(lazy.withContiguousStorageIfAvailable { _ in 0 } == nil)
        #expect(HeaderField.parse(lazy) == HeaderField("Received", "from a by b"))
    }
}
