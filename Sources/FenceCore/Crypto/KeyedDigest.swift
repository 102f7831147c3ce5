internal import CLibcrypto

/// H(key ‖ message) for one key, in each of the algorithms, with the key hashed once: every digest starts
/// from a copy of the state after the key, so that a 4,096-byte key (fence_xvm's usual) costs nothing per
/// message. fence_xvm signs a packet and answers challenges so, with the shared key.
///
/// `@unchecked Sendable`: the prepared states are written only in `init`; digests copy them
/// (`EVP_MD_CTX_copy_ex` only reads its source), from any thread.
public final class KeyedDigest: @unchecked Sendable {
    /// Whether the key is empty (no key held).
    public let keyIsEmpty: Bool
    /// The state after the key, one per algorithm, in `DigestAlgorithm.allCases` order.
    private let prepared: [OpaquePointer]

    public init(key: [UInt8]) {
        keyIsEmpty = key.isEmpty
        prepared = DigestAlgorithm.allCases.map { algorithm in
            guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
            precondition(EVP_DigestInit_ex(context, algorithm.evp, nil) == 1, "EVP_DigestInit_ex(\(algorithm)) failed")
            let updated = key.withUnsafeBytes { EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
            precondition(updated == 1, "EVP_DigestUpdate failed")
            return context
        }
    }

    deinit {
        for context in prepared { EVP_MD_CTX_free(context) }
    }

    /// H(key ‖ `message`) with `algorithm`. Calls `EVP_MD_CTX_copy_ex` (which fails only when memory runs
    /// out) and `finishDigest`.
    public func digest(_ algorithm: DigestAlgorithm, _ message: [UInt8]) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        defer { EVP_MD_CTX_free(context) }
        let index = DigestAlgorithm.allCases.firstIndex(of: algorithm)!
        precondition(EVP_MD_CTX_copy_ex(context, prepared[index]) == 1, "EVP_MD_CTX_copy_ex failed")
        return finishDigest(context, [message])
    }
}
