// libFuzzer target: the SMTP command parser, the address parser, AUTH's SASL responses
// through the state machine and the PROXY protocol header parser (see fuzz/README.md).
import NIOCore
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
    fuzzAuth(text)
    fuzzProxy(Array(bytes))
    return 0
}

/// The input as a connection's first octets on a proxied listener, whole and cut short.
func fuzzProxy(_ bytes: [UInt8]) {
    for n in [bytes.count, bytes.count / 2] {
        if case .header(_, let length) = ProxyHeaderParser.parse(bytes.prefix(n)) {
            precondition(length > 0 && length <= n && length <= ProxyHeaderParser.maxLength, "PROXY header length out of range")
        }
    }
}

/// The input as AUTH PLAIN's initial response, and as the lines answering AUTH LOGIN's
/// challenges.
func fuzzAuth(_ text: String) {
    func line(_ s: String) -> SMTPServerEvent {
        let b = ByteBuffer(string: s)
        return .command(SMTPLine(bytes: b, ending: .crlf, wireLength: b.readableBytes + 2, overflow: false))
    }
    func answer(_ m: inout SMTPServerStateMachine, _ event: SMTPServerEvent) {
        var queue = m.handle(event)
        while !queue.isEmpty {
            switch queue.removeFirst() {
            case .runStage(let s): queue += m.handle(.stageDone(s, .proceed))
            case .checkCredentials: queue += m.handle(.credentialsChecked(.rejected))
            default: break
            }
        }
    }
    var c = SMTPServerConfiguration(helloName: "fuzz")
    c.authMode = .announce
    c.authAllowPlaintext = true
    for first in ["AUTH PLAIN \(text)", "AUTH LOGIN"] {
        var m = SMTPServerStateMachine(configuration: c, sessionID: "f")
        answer(&m, .connected)
        answer(&m, line("EHLO fuzz"))
        answer(&m, line(first))
        for l in text.split(separator: "\n", maxSplits: 3) { answer(&m, line(String(l))) }
    }
}
