internal import CLibcrypto

/// Cryptographically secure random bytes from OpenSSL's CSPRNG.
public enum SecureRandom {
    /// Why random bytes could not be produced.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `count` random bytes. Calls `RAND_bytes`.
    /// - Throws: `Failure` if the generator is not seeded (it never is on a working Linux system).
    public static func bytes(count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard count == 0 || RAND_bytes(&bytes, Int32(count)) == 1 else {
            throw Failure(description: "RAND_bytes failed: error \(ERR_get_error())")
        }
        return bytes
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on their contents.
///
/// Use for every comparison of a secret or a digest of one. Calls `CRYPTO_memcmp`.
public func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    guard !lhs.isEmpty else { return true }
    return lhs.withUnsafeBytes { left in
        rhs.withUnsafeBytes { right in CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0 }
    }
}
