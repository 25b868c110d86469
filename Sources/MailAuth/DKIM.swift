import Foundation
import COpenDKIM
import DNSResolver
import NIOConcurrencyHelpers
import SMTPProtocol

/// The result of one signature (RFC 8601 §2.7.1).
public enum DKIMResult: String, Sendable, CaseIterable {
    case pass, fail, neutral, policy, temperror, permerror
}

/// One DKIM-Signature and what became of it.
public struct DKIMSignatureResult: Sendable, Equatable {
    public var result: DKIMResult
    public var domain: String
    public var selector: String
    /// i= (the agent or user identifier), when given.
    public var identity: String?
    /// rsa-sha256, rsa-sha1, ed25519-sha256.
    public var algorithm: String
    public var keyBits: Int?
    /// The first characters of b=, for header.b (RFC 6008).
    public var headerB: String
    /// l=: the body length signed, when the signature covers only part of the body.
    public var bodyLength: Int?
    /// True when l= left some of the body unsigned.
    public var partial: Bool
    public var reason: String
}

/// Verifies every DKIM signature of a message as it streams by, with libopendkim.
/// Feed it header fields, then `endOfHeaders()`, body chunks, and `finish()`. Keys are asked
/// through the project's resolver as soon as the headers are known, while the body still
/// arrives; libopendkim's key callback then only copies an answer already there, so no call
/// into the library ever waits on the network (and none runs on an event loop: the session
/// calls these from its task).
public final class DKIMVerifier: @unchecked Sendable {
    nonisolated(unsafe) static let lib: OpaquePointer? = {
        guard let lib = dkim_init(nil, nil) else { return nil }
        var bits: UInt32 = 1024   // RFC 8301: shorter keys fail
        _ = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &bits, MemoryLayout<UInt32>.size)
        // Keys are fetched at end of message (after the prefetch started at end of headers).
        var flags: UInt32 = UInt32(DKIM_LIBFLAGS_DELAYSIGPROC)
        _ = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, MemoryLayout<UInt32>.size)
        _ = dkim_set_key_lookup(lib, dkimKeyLookup)
        _ = dkim_set_prescreen(lib, dkimPrescreen)
        return lib
    }()

    /// Keys fetched for this message, by "selector._domainkey.domain".
    final class Keys: @unchecked Sendable {
        let lock = NIOLock()
        var answers: [String: DNSAnswer] = [:]
        /// Signatures past this many are ignored by the library: never hashed.
        var maxSignatures = 5
        func get(_ k: String) -> DNSAnswer? { lock.withLock { answers[k] } }
        func set(_ k: String, _ a: DNSAnswer) { lock.withLock { answers[k] = a } }
    }

    let resolver: DNSResolver
    let maxSignatures: Int
    let keyTimeout: Duration
    let keys = Keys()
    var handle: OpaquePointer?
    var fetch: Task<Void, Never>?
    var state: DKIM_STAT = DKIM_STAT_OK
    var noSignature = false
    var bodyBytes = 0
    var finished = false
    private let unmanaged: Unmanaged<Keys>

    public init(resolver: DNSResolver, maxSignatures: Int = 5, keyTimeout: Duration = .seconds(10)) {
        self.resolver = resolver
        self.maxSignatures = maxSignatures
        self.keyTimeout = keyTimeout
        keys.maxSignatures = max(1, maxSignatures)
        self.unmanaged = Unmanaged.passRetained(keys)
        var st: DKIM_STAT = 0
        if let lib = DKIMVerifier.lib {
            handle = dkim_verify(lib, Array("mailgate".utf8CString).map { UInt8(bitPattern: $0) }, nil, &st)
            if let h = handle { _ = dkim_set_user_context(h, unmanaged.toOpaque()) }
        }
        state = st
    }

    deinit {
        if let h = handle { _ = dkim_free(h) }
        unmanaged.release()
    }

    /// `DKIM-Signature` fields seen (d= and s=), so that one the library cannot read (a
    /// missing v= tag, say) is reported as permerror rather than as no signature.
    var seenSignatures: [(domain: String, selector: String)] = []

    /// One header field as received: its lines joined with CRLF, without the final CRLF.
    public func header(_ field: [UInt8]) {
        if let sig = DKIMVerifier.signatureTags(field) { seenSignatures.append(sig) }
        guard let h = handle, state == DKIM_STAT_OK else { return }
        var f = field
        state = f.withUnsafeMutableBufferPointer { dkim_header(h, $0.baseAddress, $0.count) }
    }

    /// After the last header field: starts fetching the signatures' keys.
    public func endOfHeaders() {
        guard let h = handle, state == DKIM_STAT_OK else { return }
        let st = dkim_eoh(h)
        if st == DKIM_STAT_NOSIG { noSignature = true; return }
        if st != DKIM_STAT_OK { state = st; return }
        var names: [String] = []
        for sig in signatures().prefix(maxSignatures) {
            guard let d = dkim_sig_getdomain(sig), let s = dkim_sig_getselector(sig) else { continue }
            names.append("\(String(cString: s)).\(DKIM_DNSKEYNAME).\(String(cString: d))".lowercased())
        }
        let resolver = self.resolver, keys = self.keys, timeout = self.keyTimeout
        fetch = Task {
            await withTaskGroup(of: Void.self) { g in
                for n in Set(names) {
                    g.addTask {
                        let a = await firstWithin(timeout, or: { .tempFail("no answer within \(timeout)") }) {
                            await resolver.query(n, .txt)
                        }
                        keys.set(n, a)
                    }
                }
            }
        }
    }

    /// A chunk of the body (after the blank line), with its CRLFs.
    public func body(_ chunk: [UInt8]) {
        guard let h = handle, state == DKIM_STAT_OK, !noSignature else { return }
        bodyBytes += chunk.count
        var c = chunk
        state = c.withUnsafeMutableBufferPointer { dkim_body(h, $0.baseAddress, $0.count) }
    }

    func signatures() -> [OpaquePointer] {
        guard let h = handle else { return [] }
        var list: UnsafeMutablePointer<OpaquePointer?>?
        var n: Int32 = 0
        guard dkim_getsiglist(h, &list, &n) == DKIM_STAT_OK, let l = list else { return [] }
        return (0..<Int(n)).compactMap { l[$0] }
    }

    /// The verdict on every signature (at most `maxSignatures`), in header order.
    public func finish() async -> [DKIMSignatureResult] {
        guard !finished else { return [] }
        finished = true
        guard let h = handle else { return [] }
        if !noSignature {
            await fetch?.value
            var testkey: Bool = false
            if state == DKIM_STAT_OK { state = dkim_eom(h, &testkey) }
        }
        var out: [DKIMSignatureResult] = []
        if !noSignature {
            for sig in signatures().prefix(maxSignatures) { out.append(describe(sig, h)) }
        }
        return out + unreadSignatures(reported: out)
    }

    /// Signature fields the library gave no result for: permerror, each.
    func unreadSignatures(reported: [DKIMSignatureResult]) -> [DKIMSignatureResult] {
        var left = reported.map { "\($0.domain) \($0.selector)" }
        var out: [DKIMSignatureResult] = []
        for s in seenSignatures.prefix(maxSignatures) {
            if let i = left.firstIndex(of: "\(s.domain) \(s.selector)") { left.remove(at: i); continue }
            guard reported.count + out.count < maxSignatures else { break }
            out.append(DKIMSignatureResult(result: .permerror, domain: s.domain, selector: s.selector, identity: nil, algorithm: "unknown",
                                           keyBits: nil, headerB: "", bodyLength: nil, partial: false,
                                           reason: "signature cannot be read (a required tag such as v= is missing or malformed)"))
        }
        return out
    }

    /// d= and s= of a `DKIM-Signature` field, lower-cased; nil for other fields.
    static func signatureTags(_ field: [UInt8]) -> (domain: String, selector: String)? {
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let name = trimmed(field[..<colon])
        guard name.count == 14, zip(name, "dkim-signature".utf8).allSatisfy({ $0 | 0x20 == $1 }) else { return nil }
        let tags = tagList(field[(colon + 1)...])
        return ((tags["d"] ?? "").lowercased(), (tags["s"] ?? "").lowercased())
    }

    /// Without ASCII white space (SP, HTAB, CR, LF) at either end.
    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let fws: (UInt8) -> Bool = { $0 == 32 || $0 == 9 || $0 == 13 || $0 == 10 }
        guard let first = s.firstIndex(where: { !fws($0) }), let last = s.lastIndex(where: { !fws($0) }) else { return [] }
        return s[first...last]
    }

    /// A tag=value list (RFC 6376 3.2), folding white space removed from the values.
    static func tagList(_ s: String) -> [String: String] { tagList(Array(s.utf8)[...]) }

    /// The same over octets: tags and values are ASCII (RFC 6376 3.2), so only ASCII white
    /// space (SP, HTAB, CR, LF) is folding white space.
    static func tagList(_ s: ArraySlice<UInt8>) -> [String: String] {
        let fws: (UInt8) -> Bool = { $0 == 32 || $0 == 9 || $0 == 13 || $0 == 10 }
        var out: [String: String] = [:]
        for part in s.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: true) {
            guard let eq = part.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let k = String(decoding: trimmed(part[..<eq]), as: UTF8.self)
            if out[k] == nil { out[k] = String(decoding: part[(eq + 1)...].filter { !fws($0) }, as: UTF8.self) }
        }
        return out
    }

    /// RFC 6376 3.6.1: a key with `t=s` forbids an i= in a subdomain of d=. The reason, or
    /// nil when the key allows the identity.
    func strictKeyProblem(domain: String, selector: String, identity: String?) -> String? {
        guard let i = identity, let at = i.lastIndex(of: "@"),
              case .records(let recs)? = keys.get("\(selector)._domainkey.\(domain)".lowercased()) else { return nil }
        let text = recs.compactMap { r -> String? in if case .txt(let t) = r { return t } else { return nil } }.joined()
        let flags = (DKIMVerifier.tagList(text)["t"] ?? "").split(separator: ":").map { $0.lowercased() }
        guard flags.contains("s") else { return nil }
        var idDomain = String(i[i.index(after: at)...]).lowercased()
        while idDomain.hasSuffix(".") { idDomain.removeLast() }
        return idDomain == domain.lowercased() ? nil : "the key has t=s: i=\(i) must be in d=\(domain) itself, not a subdomain (RFC 6376 3.6.1)"
    }

    func describe(_ sig: OpaquePointer, _ h: OpaquePointer) -> DKIMSignatureResult {
        let domain = dkim_sig_getdomain(sig).map { String(cString: $0) } ?? ""
        let selector = dkim_sig_getselector(sig).map { String(cString: $0) } ?? ""
        var alg: dkim_alg_t = 0
        _ = dkim_sig_getsignalg(sig, &alg)
        let algorithm: String
        switch Int32(alg) {
        case DKIM_SIGN_RSASHA1: algorithm = "rsa-sha1"
        case DKIM_SIGN_RSASHA256: algorithm = "rsa-sha256"
        case DKIM_SIGN_ED25519SHA256: algorithm = "ed25519-sha256"
        default: algorithm = "unknown"
        }
        var bits: UInt32 = 0
        let haveBits = dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK && bits > 0
        let identity = tag(sig, "i")
        let b = tag(sig, "b").map { String($0.filter { !$0.isWhitespace }.prefix(12)) } ?? ""
        var msgLen: Int = 0, canonLen: Int = 0, signLen: Int = 0
        var l: Int?
        if dkim_sig_getcanonlen(h, sig, &msgLen, &canonLen, &signLen) == DKIM_STAT_OK, tag(sig, "l") != nil {
            l = signLen
        }
        let partial = l != nil && canonLen > (l ?? 0) || (l != nil && msgLen > (l ?? 0))
        let flags = dkim_sig_getflags(sig)
        let bh = dkim_sig_getbh(sig)
        let err = dkim_sig_geterror(sig)
        let errText = dkim_sig_geterrorstr(err).map { String(cString: $0) } ?? "error \(err)"
        var result: DKIMResult
        var reason: String
        if flags & UInt32(DKIM_SIGFLAG_PASSED) != 0 && bh == DKIM_SIGBH_MATCH {
            result = .pass
            reason = "signature verified"
            if algorithm == "rsa-sha1" {
                result = .policy
                reason = "rsa-sha1 signatures are not accepted (RFC 8301)"
            } else if let why = strictKeyProblem(domain: domain, selector: selector, identity: identity) {
                result = .permerror
                reason = why
            }
        } else if let why = keyProblem(domain, selector) {
            // The key could not be fetched (timeout, SERVFAIL): try again later, whatever
            // error the library derived from that.
            result = .temperror
            reason = "key lookup failed: \(why)"
        } else {
            switch err {
            case DKIM_SIGERROR_KEYFAIL:
                result = .temperror
                reason = "key lookup failed: \(keyProblem(domain, selector) ?? errText)"
            case DKIM_SIGERROR_NOKEY, DKIM_SIGERROR_KEYREVOKED, DKIM_SIGERROR_KEYDECODE, DKIM_SIGERROR_DNSSYNTAX, DKIM_SIGERROR_MULTIREPLY,
                 DKIM_SIGERROR_KEYVERSION, DKIM_SIGERROR_KEYTYPEMISSING, DKIM_SIGERROR_KEYTYPEUNKNOWN, DKIM_SIGERROR_NOTEMAILKEY,
                 DKIM_SIGERROR_VERSION, DKIM_SIGERROR_INVALID_A, DKIM_SIGERROR_MISSING_A, DKIM_SIGERROR_MISSING_D, DKIM_SIGERROR_EMPTY_D,
                 DKIM_SIGERROR_MISSING_S, DKIM_SIGERROR_EMPTY_S, DKIM_SIGERROR_MISSING_B, DKIM_SIGERROR_EMPTY_B, DKIM_SIGERROR_CORRUPT_B,
                 DKIM_SIGERROR_MISSING_BH, DKIM_SIGERROR_EMPTY_BH, DKIM_SIGERROR_CORRUPT_BH, DKIM_SIGERROR_MISSING_H, DKIM_SIGERROR_EMPTY_H,
                 DKIM_SIGERROR_INVALID_H, DKIM_SIGERROR_INVALID_HC, DKIM_SIGERROR_INVALID_BC, DKIM_SIGERROR_INVALID_L, DKIM_SIGERROR_INVALID_Q,
                 DKIM_SIGERROR_INVALID_QO, DKIM_SIGERROR_DOMAIN, DKIM_SIGERROR_SUBDOMAIN, DKIM_SIGERROR_TIMESTAMPS, DKIM_SIGERROR_MISSING_V,
                 DKIM_SIGERROR_EMPTY_V, DKIM_SIGERROR_KEYHASHMISMATCH, DKIM_SIGERROR_KEYUNKNOWNHASH:
                result = .permerror
                reason = err == DKIM_SIGERROR_NOKEY ? "no key at \(selector)._domainkey.\(domain)" : errText
            case DKIM_SIGERROR_KEYTOOSMALL:
                result = .fail
                reason = "key of \(haveBits ? "\(bits)" : "fewer than 1024") bits is too small (RFC 8301 wants 1024 or more)"
            case DKIM_SIGERROR_EXPIRED, DKIM_SIGERROR_FUTURE:
                result = .fail
                reason = errText
            default:
                result = .fail
                reason = bh == DKIM_SIGBH_MISMATCH ? "body hash did not verify" : (err == DKIM_SIGERROR_OK ? "signature did not verify" : errText)
            }
        }
        if flags & UInt32(DKIM_SIGFLAG_PROCESSED) == 0 && result == .fail && err == DKIM_SIGERROR_OK {
            result = .neutral
            reason = "signature not processed"
        }
        if partial && result == .pass { reason += "; l=\(l ?? 0) leaves part of the body unsigned" }
        return DKIMSignatureResult(result: result, domain: domain.lowercased(), selector: selector, identity: identity, algorithm: algorithm,
                                   keyBits: haveBits ? Int(bits) : nil, headerB: b, bodyLength: l, partial: partial, reason: reason)
    }

    func tag(_ sig: OpaquePointer, _ name: String) -> String? {
        var n = Array(name.utf8) + [0]
        return n.withUnsafeMutableBufferPointer { p in dkim_sig_gettagvalue(sig, false, p.baseAddress).map { String(cString: $0) } }
    }

    func keyProblem(_ domain: String, _ selector: String) -> String? {
        if case .tempFail(let why)? = keys.get("\(selector)._domainkey.\(domain)".lowercased()) { return why }
        return nil
    }
}

/// libopendkim's prescreen: signatures past `maxSignatures` are ignored, so a message with
/// a thousand signatures (each distinct l= a body hash of its own) costs what five do.
private func dkimPrescreen(_ dkim: OpaquePointer?, _ sigs: UnsafeMutablePointer<OpaquePointer?>?, _ nsigs: Int32) -> DKIM_CBSTAT {
    guard let dkim, let sigs, nsigs > 0, let ctx = dkim_get_user_context(dkim) else { return DKIM_CBSTAT(DKIM_CBSTAT_CONTINUE) }
    let keys = Unmanaged<DKIMVerifier.Keys>.fromOpaque(ctx).takeUnretainedValue()
    let keep = keys.lock.withLock { keys.maxSignatures }
    if Int(nsigs) > keep {
        for i in keep..<Int(nsigs) { if let s = sigs[i] { dkim_sig_ignore(s) } }
    }
    return DKIM_CBSTAT(DKIM_CBSTAT_CONTINUE)
}

/// libopendkim's key lookup: copies the key record fetched earlier into `buf`.
private func dkimKeyLookup(_ dkim: OpaquePointer?, _ sig: OpaquePointer?, _ buf: UnsafeMutablePointer<UInt8>?, _ buflen: Int) -> DKIM_CBSTAT {
    guard let dkim, let sig, let buf, buflen > 0, let ctx = dkim_get_user_context(dkim),
          let d = dkim_sig_getdomain(sig), let s = dkim_sig_getselector(sig) else { return DKIM_CBSTAT(DKIM_CBSTAT_ERROR) }
    let keys = Unmanaged<DKIMVerifier.Keys>.fromOpaque(ctx).takeUnretainedValue()
    let name = "\(String(cString: s)).\(DKIM_DNSKEYNAME).\(String(cString: d))".lowercased()
    switch keys.get(name) {
    case .records(let r)?:
        let texts = r.compactMap { rec -> String? in if case .txt(let t) = rec { return t } else { return nil } }
        guard texts.count == 1 else { return DKIM_CBSTAT(texts.isEmpty ? DKIM_CBSTAT_NOTFOUND : DKIM_CBSTAT_ERROR) }
        let bytes = Array(texts[0].utf8)
        guard bytes.count < buflen else { return DKIM_CBSTAT(DKIM_CBSTAT_ERROR) }
        buf.update(from: bytes, count: bytes.count)
        buf[bytes.count] = 0
        return DKIM_CBSTAT(DKIM_CBSTAT_CONTINUE)
    case .nxdomain?, .noData?: return DKIM_CBSTAT(DKIM_CBSTAT_NOTFOUND)
    case .tempFail?, nil: return DKIM_CBSTAT(DKIM_CBSTAT_TRYAGAIN)
    }
}

extension DKIMVerifier {
    /// Verifies a whole message (LF or CRLF line ends), as `mailgate check dkim` does; the
    /// gateway streams instead.
    public func verify(message: [UInt8]) async -> [DKIMSignatureResult] {
        final class Collect: @unchecked Sendable {
            var fields: [[UInt8]] = []
            var body: [UInt8] = []
        }
        let c = Collect()
        var lines = message.split(separator: 0x0A, omittingEmptySubsequences: false).map { Array($0.last == 0x0D ? $0.dropLast() : $0) }
        if lines.last?.isEmpty == true { lines.removeLast() }
        var i = 0
        while i < lines.count, !lines[i].isEmpty {
            if (lines[i].first == 0x20 || lines[i].first == 0x09), !c.fields.isEmpty { c.fields[c.fields.count - 1] += [13, 10] + lines[i] }
            else { c.fields.append(lines[i]) }
            i += 1
        }
        for f in c.fields { header(f) }
        endOfHeaders()
        for l in lines[min(i + 1, lines.count)...] { c.body += l + [13, 10] }
        if !c.body.isEmpty { body(c.body) }
        return await finish()
    }
}
