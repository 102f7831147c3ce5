internal import CLibcrypto

/// The digest algorithms fence_xvm uses for packet signing and challenge-response, and for token hashing.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case sha1
    case sha256
    case sha512

    /// The digest length in bytes.
    public var length: Int {
        switch self {
        case .sha1: return 20
        case .sha256: return 32
        case .sha512: return 64
        }
    }

    var evp: OpaquePointer? {
        switch self {
        case .sha1: return EVP_sha1()
        case .sha256: return EVP_sha256()
        case .sha512: return EVP_sha512()
        }
    }

    /// The digest of the concatenation of `parts` (e.g. key ‖ message), without copying them together.
    ///
    /// Calls `EVP_DigestInit_ex`, `EVP_DigestUpdate` and `EVP_DigestFinal_ex`. These fail only when memory
    /// runs out, which is a condition this process cannot continue from.
    public func digest(_ parts: [UInt8]...) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        defer { EVP_MD_CTX_free(context) }
        precondition(EVP_DigestInit_ex(context, evp, nil) == 1, "EVP_DigestInit_ex(\(self)) failed")
        return finishDigest(context, parts)
    }
}

/// Feeds `parts` to a started digest and returns the digest. Calls `EVP_DigestUpdate` and
/// `EVP_DigestFinal_ex`, which fail only when memory runs out.
func finishDigest(_ context: OpaquePointer, _ parts: [[UInt8]]) -> [UInt8] {
    for part in parts {
        let updated = part.withUnsafeBytes { EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
        precondition(updated == 1, "EVP_DigestUpdate failed")
    }
    var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var size: UInt32 = 0
    precondition(EVP_DigestFinal_ex(context, &output, &size) == 1, "EVP_DigestFinal_ex failed")
    return Array(output.prefix(Int(size)))
}

extension Sequence<UInt8> {
    /// Lower-case hexadecimal text.
    public var hexString: String {
        var text: [UInt8] = []
        text.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

private let hexDigits = Array("0123456789abcdef".utf8)
