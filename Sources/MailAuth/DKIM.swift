import Foundation
import COpenDKIM
import DNSResolver
import NIOConcurrencyHelpers

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
        return lib
    }()

    /// Keys fetched for this message, by "selector._domainkey.domain".
    final class Keys: @unchecked Sendable {
        let lock = NIOLock()
        var answers: [String: DNSAnswer] = [:]
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

    /// One header field as received: its lines joined with CRLF, without the final CRLF.
    public func header(_ field: [UInt8]) {
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
                        let a = await withTaskGroup(of: DNSAnswer?.self) { inner in
                            inner.addTask { await resolver.query(n, .txt) }
                            inner.addTask { try? await Task.sleep(for: timeout); return nil }
                            let first = await inner.next() ?? nil
                            inner.cancelAll()
                            return first ?? .tempFail("no answer within \(timeout)")
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
        if noSignature { return [] }
        await fetch?.value
        var testkey: Bool = false
        if state == DKIM_STAT_OK { state = dkim_eom(h, &testkey) }
        var out: [DKIMSignatureResult] = []
        for sig in signatures().prefix(maxSignatures) {
            out.append(describe(sig, h))
        }
        return out
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
