import CLibCrypto

public enum Digest {
    /// Lower-case hex SHA-256 of `bytes`, through libcrypto.
    public static func sha256Hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var md = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        let ok: Int32 = bytes.withContiguousStorageIfAvailable { p in
            EVP_Digest(p.baseAddress, p.count, &md, &len, EVP_sha256(), nil)
        } ?? Array(bytes).withUnsafeBufferPointer { p in
            EVP_Digest(p.baseAddress, p.count, &md, &len, EVP_sha256(), nil)
        }
        precondition(ok == 1, "EVP_Digest failed")
        return hex(md)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static let zero = String(repeating: "0", count: 64)
}
