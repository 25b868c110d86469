/// The argument of HELO/EHLO classified per RFC 5321 §4.1.1.1 (Domain / address-literal).
public enum HeloArgument: Equatable, Sendable {
    /// A fully qualified domain name (at least two labels).
    case fqdn(String)
    /// `[1.2.3.4]` or `[IPv6:…]`.
    case addressLiteral(IPAddress)
    /// Anything else, with the reason.
    case invalid(String)

    public init(_ s: String) {
        if s.hasPrefix("[") {
            if let ip = AddressParser.parseAddressLiteral(Substring(s)) {
                self = .addressLiteral(ip)
            } else {
                self = .invalid("malformed address literal")
            }
            return
        }
        if IPAddress(s) != nil {
            self = .invalid("bare IP address; an address literal needs brackets")
            return
        }
        guard AddressParser.isDomain(Substring(s), allowUTF8: true) else {
            self = .invalid("not a valid domain name")
            return
        }
        var d = s
        if d.hasSuffix(".") { d.removeLast() }
        guard d.contains(".") else {
            self = .invalid("not a fully qualified domain name")
            return
        }
        if let tld = d.split(separator: ".").last, tld.allSatisfy(\.isNumber) {
            self = .invalid("numeric top-level label")
            return
        }
        self = .fqdn(s)
    }
}
