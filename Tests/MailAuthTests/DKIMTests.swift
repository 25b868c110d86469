import Foundation
import Testing
import SMTPProtocol
import DNSResolver
@testable import MailAuth

/// Messages signed by dkimpy with keys made here, keys published by the fixture DNS server.
final class DKIMWorld: @unchecked Sendable {
    static let tool = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("dkimtool.py").path
    let dir: String
    var server: DNSFixtureServer!
    var resolver: DNSResolver!

    static let message = """
    From: Alice <alice@example.com>
    To: bob@example.org
    Subject: DKIM test
    Date: Tue, 24 Nov 2026 10:00:00 +0000
    Message-ID: <dkim-1@example.com>

    Hello Bob.
    This is the body.

    """.replacingOccurrences(of: "\n", with: "\r\n")

    init() async throws {
        dir = NSTemporaryDirectory() + "mg-dkim-" + UUID().uuidString
        _ = try await Self.run(["keys", dir])
        func txt(_ name: String) throws -> String {
            let v = try String(contentsOfFile: dir + "/\(name).txt", encoding: .utf8)
            // TXT character-strings hold 255 octets at most.
            var chunks: [String] = []
            var rest = Substring(v)
            while !rest.isEmpty { chunks.append("\"" + rest.prefix(200) + "\""); rest = rest.dropFirst(200) }
            return chunks.joined(separator: " ")
        }
        let fixtures = """
        rsa._domainkey.example.com. 300 IN TXT \(try txt("rsa2048"))
        small._domainkey.example.com. 300 IN TXT \(try txt("rsa512"))
        ed._domainkey.example.com. 300 IN TXT \(try txt("ed25519"))
        rsa._domainkey.example.net. 300 IN TXT \(try txt("rsa2048"))
        strict._domainkey.example.com. 300 IN TXT \(try txt("rsa2048").replacingOccurrences(of: "k=rsa; ", with: "k=rsa; t=s; "))
        revoked._domainkey.example.com. 300 IN TXT "v=DKIM1; k=rsa; p="
        slow._domainkey.example.com. TIMEOUT
        example.com. SOA 60
        """
        server = try DNSFixtureServer(fixtures: fixtures)
        try await server.start()
        var c = ResolverConfig(servers: [NameServer(server.address)!])
        c.timeout = 1
        c.attempts = 1
        resolver = DNSResolver(config: c)
    }

    /// Runs the tool on a plain thread; returns its stdout.
    static func run(_ args: [String], input: Data? = nil) async throws -> String {
        try await withCheckedThrowingContinuation { cont in
            Thread.detachNewThread {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
                p.arguments = [tool] + args
                let out = Pipe(), inp = Pipe()
                p.standardOutput = out
                p.standardInput = inp
                do { try p.run() } catch { cont.resume(throwing: error); return }
                if let d = input { inp.fileHandleForWriting.write(d) }
                try? inp.fileHandleForWriting.close()
                let data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                if p.terminationStatus != 0 { cont.resume(throwing: NSError(domain: "dkimtool", code: Int(p.terminationStatus))); return }
                cont.resume(returning: String(decoding: data, as: UTF8.self))
            }
        }
    }

    func sign(_ message: String = DKIMWorld.message, key: String = "rsa2048.pem", selector: String = "rsa", domain: String = "example.com",
              algorithm: String = "rsa-sha256", canon: String = "relaxed/relaxed", length: Bool = false,
              expired: Bool = false, future: Bool = false, identity: String = "") async throws -> String {
        let args: [String: Any] = ["message_b64": Data(message.utf8).base64EncodedString(), "key": dir + "/" + key, "selector": selector,
                                   "domain": domain, "algorithm": algorithm, "canon": canon, "length": length, "expired": expired, "future": future,
                                   "identity": identity]
        let out = try await Self.run(["sign"], input: try JSONSerialization.data(withJSONObject: args))
        return String(decoding: Data(base64Encoded: out)!, as: UTF8.self)
    }

    func verify(_ message: String) async -> [DKIMSignatureResult] {
        await DKIMVerifier(resolver: resolver, keyTimeout: .seconds(3)).verify(message: Array(message.utf8))
    }

    func stop() async { await server.stop() }
}

@Suite(.serialized) struct DKIMTests {
    @Test func validSignaturesPass() async throws {
        let w = try await DKIMWorld()
        let rr = await w.verify(try await w.sign())
        #expect(rr.map(\.result) == [.pass])
        let r = try #require(rr.first)
        #expect(r.domain == "example.com")
        #expect(r.selector == "rsa")
        #expect(r.algorithm == "rsa-sha256")
        #expect(r.keyBits == 2048)
        #expect(r.identity == "@example.com")
        #expect(r.headerB.count == 12)
        #expect(r.partial == false)
        #expect(await w.verify(try await w.sign(canon: "simple/simple")).map(\.result) == [.pass])
        await w.stop()
    }

    @Test func ed25519Passes() async throws {
        let w = try await DKIMWorld()
        let r = await w.verify(try await w.sign(key: "ed25519.key", selector: "ed", algorithm: "ed25519-sha256"))
        #expect(r.map(\.result) == [.pass], "\(r)")
        #expect(r.first?.algorithm == "ed25519-sha256")
        await w.stop()
    }

    @Test func changedHeaderOrBodyFails() async throws {
        let w = try await DKIMWorld()
        let signed = try await w.sign()
        let header = await w.verify(signed.replacingOccurrences(of: "Subject: DKIM test", with: "Subject: DKIM test!"))
        #expect(header.map(\.result) == [.fail])
        #expect(header.first?.reason == "signature did not verify" || header.first?.reason.contains("signature") == true, "\(header)")
        let body = await w.verify(signed.replacingOccurrences(of: "Hello Bob.", with: "Hello Bob!"))
        #expect(body.map(\.result) == [.fail])
        #expect(body.first?.reason == "body hash did not verify")
        await w.stop()
    }

    @Test func aBodyExtendedPastLIsReportedAsPartial() async throws {
        let w = try await DKIMWorld()
        let signed = try await w.sign(length: true)
        let r = await w.verify(signed + "Appended by someone else.\r\n")
        #expect(r.map(\.result) == [.pass])
        #expect(r.first?.partial == true)
        #expect(r.first?.bodyLength != nil)
        let whole = await w.verify(signed)
        #expect(whole.first?.partial == false)
        await w.stop()
    }

    @Test func expiredAndFutureSignaturesFail() async throws {
        let w = try await DKIMWorld()
        let e = await w.verify(try await w.sign(expired: true))
        #expect(e.map(\.result) == [.fail])
        #expect(e.first?.reason == "signature expired")
        let f = await w.verify(try await w.sign(future: true))
        #expect(f.map(\.result) == [.fail])
        #expect(f.first?.reason == "signature timestamp in the future")
        await w.stop()
    }

    @Test func keyProblems() async throws {
        let w = try await DKIMWorld()
        let missing = await w.verify(try await w.sign(selector: "nokey"))
        #expect(missing.map(\.result) == [.permerror])
        #expect(missing.first?.reason == "no key at nokey._domainkey.example.com")
        let revoked = await w.verify(try await w.sign(selector: "revoked"))
        #expect(revoked.map(\.result) == [.permerror], "\(revoked)")
        let slow = await w.verify(try await w.sign(selector: "slow"))
        #expect(slow.map(\.result) == [.temperror], "\(slow)")
        #expect(slow.first?.reason.hasPrefix("key lookup failed: ") == true, "\(slow)")
        let small = await w.verify(try await w.sign(key: "rsa512.pem", selector: "small"))
        #expect(small.map(\.result) == [.fail], "\(small)")
        let sha1 = await w.verify(try await w.sign(algorithm: "rsa-sha1"))
        #expect(sha1.map(\.result) == [.policy])
        #expect(sha1.first?.reason == "rsa-sha1 signatures are not accepted (RFC 8301)")
        await w.stop()
    }

    @Test func twoSignaturesOfWhichOneFails() async throws {
        let w = try await DKIMWorld()
        let once = try await w.sign(domain: "example.net")
        // The second signer signs a different Subject than the message finally has.
        let twice = try await w.sign(once)
        let r = await w.verify(twice.replacingOccurrences(of: "Hello Bob.", with: "Hello Bob."))
        #expect(r.map(\.result) == [.pass, .pass])
        let broken = try await w.sign(once.replacingOccurrences(of: "Subject: DKIM test", with: "Subject: changed"))
        let rb = await w.verify(broken)
        #expect(Set(rb.map { "\($0.domain) \($0.result.rawValue)" }) == ["example.com pass", "example.net fail"])
        await w.stop()
    }

    /// A signature the library cannot read (no v= tag) is a permerror, not "no signature".
    @Test func aSignatureWithoutVersionIsAPermerror() async throws {
        let w = try await DKIMWorld()
        let signed = try await w.sign()
        #expect(signed.contains("v=1; "))
        let r = await w.verify(signed.replacingOccurrences(of: "v=1; ", with: ""))
        #expect(r.map(\.result) == [.permerror], "\(r)")
        #expect(r.first?.domain == "example.com")
        #expect(r.first?.selector == "rsa")
        await w.stop()
    }

    /// RFC 6376 3.6.1: a key with t=s refuses an i= in a subdomain of d=.
    @Test func aStrictKeyRefusesASubdomainIdentity() async throws {
        let w = try await DKIMWorld()
        let sub = await w.verify(try await w.sign(selector: "strict", identity: "alice@sub.example.com"))
        #expect(sub.map(\.result) == [.permerror], "\(sub)")
        #expect(sub.first?.reason.contains("t=s") == true, "\(sub)")
        let same = await w.verify(try await w.sign(selector: "strict", identity: "alice@example.com"))
        #expect(same.map(\.result) == [.pass], "\(same)")
        // Without t=s a subdomain identity is fine.
        let loose = await w.verify(try await w.sign(identity: "alice@sub.example.com"))
        #expect(loose.map(\.result) == [.pass], "\(loose)")
        await w.stop()
    }

    /// maxSignatures bounds what the library hashes, not only what is reported: a thousand
    /// signatures cost what five do.
    @Test func aThousandSignaturesAreBoundedByMaxSignatures() async throws {
        let w = try await DKIMWorld()
        let signed = try await w.sign()
        let end = try #require(signed.range(of: "\r\nFrom: "))
        let sig = String(signed[..<end.lowerBound]) + "\r\n"
        let many = String(repeating: sig, count: 1000) + "From: " + String(signed[end.upperBound...])
        let started = ContinuousClock.now
        let r = await DKIMVerifier(resolver: w.resolver, maxSignatures: 5, keyTimeout: .seconds(3)).verify(message: Array(many.utf8))
        let took = ContinuousClock.now - started
        #expect(r.count == 5)
        #expect(r.allSatisfy { $0.result == .pass }, "\(r)")
        print("DKIM: 1000 signatures verified (5 processed) in \(took)")
        await w.stop()
    }

    @Test func aMessageWithoutSignatures() async throws {
        let w = try await DKIMWorld()
        #expect(await w.verify(DKIMWorld.message).isEmpty)
        await w.stop()
    }
}
