// libFuzzer target: the SMTP command parser and the address parser (see fuzz/README.md).
import SMTPProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCommand(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: bytes, as: UTF8.self)
    for utf8 in [false, true] {
        for brackets in [false, true] {
            _ = CommandParser.parse(text, options: CommandParserOptions(addressBracketsEnforcement: brackets, dsn: brackets != utf8), transactionUTF8: utf8)
        }
        _ = try? AddressParser.parseMailbox(Substring(text), allowUTF8: utf8)
    }
    _ = AddressParser.parseAddressLiteral(Substring(text))
    _ = AddressParser.splitPath(Substring(text), bracketsRequired: true)
    _ = HeloArgument(text)
    return 0
}
