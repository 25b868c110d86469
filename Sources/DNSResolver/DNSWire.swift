import CLDNS
import SMTPProtocol
#if canImport(Glibc)
import Glibc
#endif

/// The record types the gateway asks for.
public enum DNSType: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case a = 1, ns = 2, cname = 5, soa = 6, ptr = 12, mx = 15, txt = 16, aaaa = 28

    public init?(name: String) {
        guard let t = DNSType.allCases.first(where: { $0.description == name.uppercased() }) else { return nil }
        self = t
    }

    public var description: String {
        switch self {
        case .a: return "A"
        case .ns: return "NS"
        case .cname: return "CNAME"
        case .soa: return "SOA"
        case .ptr: return "PTR"
        case .mx: return "MX"
        case .txt: return "TXT"
        case .aaaa: return "AAAA"
        }
    }
}

/// One record's data.
public enum DNSRecord: Sendable, Equatable, Hashable, CustomStringConvertible {
    case a(IPAddress)
    case aaaa(IPAddress)
    /// The character-strings of one TXT record, joined without a separator (RFC 7208 §3.3).
    case txt(String)
    case mx(preference: Int, exchange: String)
    case ptr(String)
    case cname(String)
    case ns(String)
    case soa(minimum: Int)

    public var description: String {
        switch self {
        case .a(let ip), .aaaa(let ip): return ip.description
        case .txt(let s): return "\"\(s)\""
        case .mx(let p, let x): return "\(p) \(x)"
        case .ptr(let n), .cname(let n), .ns(let n): return n
        case .soa(let m): return "SOA minimum \(m)"
        }
    }

    public var address: IPAddress? {
        switch self {
        case .a(let ip), .aaaa(let ip): return ip
        default: return nil
        }
    }
}

/// A resource record of a response.
public struct DNSResourceRecord: Sendable, Equatable {
    public var name: String
    public var type: UInt16
    public var ttl: Int
    public var record: DNSRecord?
}

/// A DNS message as the resolver needs it.
public struct DNSMessage: Sendable {
    public var id: UInt16
    public var isResponse: Bool
    public var rcode: Int
    public var truncated: Bool
    public var recursionDesired: Bool
    public var questionName: String
    public var questionType: UInt16
    public var answers: [DNSResourceRecord]
    public var authority: [DNSResourceRecord]
}

/// Names as the resolver keys them: lower case, no trailing dot.
public func canonicalName(_ s: String) -> String {
    var n = s.lowercased()
    while n.hasSuffix(".") { n.removeLast() }
    return n
}

/// The wire format, through libldns.
public enum DNSWire {
    public static let noError = 0, formErr = 1, servFail = 2, nxDomain = 3, notImp = 4, refused = 5

    /// A name that can be asked: 1 to 253 octets, labels of 1 to 63 (RFC 1035 §2.3.4).
    public static func isValidName(_ name: String) -> Bool {
        let n = canonicalName(name)
        return !n.isEmpty && n.utf8.count <= 253
            && n.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0.utf8.count <= 63 }
    }

    /// A query with recursion desired, for a name in presentation form (`\DDD` escapes, as
    /// `DNSName.asked` gives it); nil when it is not a valid DNS name (libldns measures
    /// labels and length in wire octets).
    public static func query(name: String, type: DNSType, id: UInt16) -> [UInt8]? {
        let n = canonicalName(name)
        guard !n.isEmpty, let dname = ldns_dname_new_frm_str(n + ".") else { return nil }
        guard let pkt = ldns_pkt_query_new(dname, ldns_rr_type(UInt32(type.rawValue)), LDNS_RR_CLASS_IN, UInt16(LDNS_RD)) else {
            ldns_rdf_deep_free(dname)
            return nil
        }
        defer { ldns_pkt_free(pkt) }
        ldns_pkt_set_id(pkt, id)
        return wire(pkt)
    }

    static func wire(_ pkt: UnsafeMutablePointer<ldns_pkt>) -> [UInt8]? {
        var buf: UnsafeMutablePointer<UInt8>?
        var size = 0
        guard ldns_pkt2wire(&buf, pkt, &size) == LDNS_STATUS_OK, let b = buf else { return nil }
        defer { free(b) }
        return Array(UnsafeBufferPointer(start: b, count: size))
    }

    /// Parses a message; nil when it is not a well-formed DNS message.
    public static func parse(_ bytes: [UInt8]) -> DNSMessage? {
        guard bytes.count >= 12 else { return nil }
        var pkt: UnsafeMutablePointer<ldns_pkt>?
        let st = bytes.withUnsafeBufferPointer { ldns_wire2pkt(&pkt, $0.baseAddress, $0.count) }
        guard st == LDNS_STATUS_OK, let p = pkt else { return nil }
        defer { ldns_pkt_free(p) }
        var qname = "", qtype: UInt16 = 0
        if let q = ldns_pkt_question(p), ldns_rr_list_rr_count(q) > 0, let rr = ldns_rr_list_rr(q, 0) {
            qname = rdfName(ldns_rr_owner(rr))
            qtype = UInt16(ldns_rr_get_type(rr).rawValue)
        }
        return DNSMessage(id: ldns_pkt_id(p), isResponse: ldns_pkt_qr(p) != 0, rcode: Int(ldns_pkt_get_rcode(p).rawValue),
                          truncated: ldns_pkt_tc(p) != 0, recursionDesired: ldns_pkt_rd(p) != 0, questionName: qname, questionType: qtype,
                          answers: records(ldns_pkt_answer(p)), authority: records(ldns_pkt_authority(p)))
    }

    static func rdfName(_ rdf: UnsafeMutablePointer<ldns_rdf>?) -> String {
        guard let rdf, let c = ldns_rdf2str(rdf) else { return "" }
        defer { free(c) }
        return canonicalName(String(cString: c))
    }

    static func records(_ list: UnsafeMutablePointer<ldns_rr_list>?) -> [DNSResourceRecord] {
        guard let list else { return [] }
        var out: [DNSResourceRecord] = []
        for i in 0..<ldns_rr_list_rr_count(list) {
            guard let rr = ldns_rr_list_rr(list, i) else { continue }
            let type = UInt16(ldns_rr_get_type(rr).rawValue)
            out.append(DNSResourceRecord(name: rdfName(ldns_rr_owner(rr)), type: type, ttl: Int(ldns_rr_ttl(rr)), record: record(rr, type)))
        }
        return out
    }

    static func rdfBytes(_ rr: UnsafeMutablePointer<ldns_rr>, _ i: Int) -> [UInt8] {
        guard i < ldns_rr_rd_count(rr), let rdf = ldns_rr_rdf(rr, i), let d = ldns_rdf_data(rdf) else { return [] }
        return Array(UnsafeBufferPointer(start: d, count: ldns_rdf_size(rdf)))
    }

    static func record(_ rr: UnsafeMutablePointer<ldns_rr>, _ type: UInt16) -> DNSRecord? {
        switch DNSType(rawValue: type) {
        case .a:
            let b = rdfBytes(rr, 0)
            guard b.count == 4 else { return nil }
            return .a(.v4(UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])))
        case .aaaa:
            let b = rdfBytes(rr, 0)
            guard b.count == 16 else { return nil }
            return .aaaa(IPAddress(v6Bytes: b))
        case .txt:
            var s: [UInt8] = []
            for i in 0..<ldns_rr_rd_count(rr) {
                let b = rdfBytes(rr, i)
                // One character-string: a length octet, then that many octets. An empty
                // string ("") is legal and adds nothing; a length past the data is dropped.
                guard let len = b.first, b.count >= Int(len) + 1 else { continue }
                s += b.dropFirst().prefix(Int(len))
            }
            return .txt(String(decoding: s, as: UTF8.self))
        case .mx:
            let p = rdfBytes(rr, 0)
            guard p.count == 2 else { return nil }
            return .mx(preference: Int(p[0]) << 8 | Int(p[1]), exchange: rdfName(ldns_rr_rdf(rr, 1)))
        case .ptr: return .ptr(rdfName(ldns_rr_rdf(rr, 0)))
        case .cname: return .cname(rdfName(ldns_rr_rdf(rr, 0)))
        case .ns: return .ns(rdfName(ldns_rr_rdf(rr, 0)))
        case .soa:
            let m = rdfBytes(rr, 6)
            guard m.count == 4 else { return nil }
            return .soa(minimum: Int(m[0]) << 24 | Int(m[1]) << 16 | Int(m[2]) << 8 | Int(m[3]))
        case nil: return nil
        }
    }

    /// A response to `query` with the given rcode and records in zone-file syntax
    /// (`name TTL IN TYPE data`); for the fixture server. Nil when a record does not parse.
    public static func response(to query: DNSMessage, rcode: Int, answers: [String], authority: [String] = [],
                                truncated: Bool = false) -> [UInt8]? {
        guard let p = ldns_pkt_new() else { return nil }
        defer { ldns_pkt_free(p) }
        ldns_pkt_set_id(p, query.id)
        ldns_pkt_set_qr(p, 1)
        ldns_pkt_set_aa(p, 1)
        ldns_pkt_set_rd(p, query.recursionDesired ? 1 : 0)
        ldns_pkt_set_rcode(p, UInt8(rcode))
        ldns_pkt_set_tc(p, truncated ? 1 : 0)
        var q: UnsafeMutablePointer<ldns_rr>?
        let qline = "\(query.questionName.isEmpty ? "." : query.questionName + ".") IN TYPE\(query.questionType)"
        guard ldns_rr_new_question_frm_str(&q, qline, nil, nil) == LDNS_STATUS_OK, let qrr = q else { return nil }
        ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, qrr)
        for (lines, section) in [(answers, LDNS_SECTION_ANSWER), (authority, LDNS_SECTION_AUTHORITY)] {
            for line in lines {
                var rr: UnsafeMutablePointer<ldns_rr>?
                guard ldns_rr_new_frm_str(&rr, line, 300, nil, nil) == LDNS_STATUS_OK, let r = rr else { return nil }
                ldns_pkt_push_rr(p, section, r)
            }
        }
        return wire(p)
    }

    /// True when a record line in zone-file syntax parses.
    public static func isValidRecord(_ line: String) -> Bool {
        var rr: UnsafeMutablePointer<ldns_rr>?
        guard ldns_rr_new_frm_str(&rr, line, 300, nil, nil) == LDNS_STATUS_OK, let r = rr else { return false }
        ldns_rr_free(r)
        return true
    }
}
