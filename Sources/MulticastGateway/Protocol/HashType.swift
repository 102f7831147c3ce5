package import FenceCore

/// fence_xvm's packet-signing and challenge-response algorithms, by their wire numbers.
public enum HashType: UInt8, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case none = 0
    case sha1 = 1
    case sha256 = 2
    case sha512 = 3

    /// Parses the configuration spelling: `none`, `sha1`, `sha256`, `sha512`.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = match
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .sha1: return "sha1"
        case .sha256: return "sha256"
        case .sha512: return "sha512"
        }
    }

    public static func < (lhs: HashType, rhs: HashType) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The digest algorithm, nil for `none`.
    var algorithm: DigestAlgorithm? {
        switch self {
        case .none: return nil
        case .sha1: return .sha1
        case .sha256: return .sha256
        case .sha512: return .sha512
        }
    }

    /// H(key ‖ message), zero-padded to 64 bytes as on the wire; 64 zero bytes for `none`.
    package func paddedDigest(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        guard let algorithm else { return [UInt8](repeating: 0, count: 64) }
        return Self.padded(algorithm.digest(key, message))
    }

    /// As `paddedDigest(key:_:)`, from the key hashed once.
    package func paddedDigest(key: KeyedDigest, _ message: [UInt8]) -> [UInt8] {
        guard let algorithm else { return [UInt8](repeating: 0, count: 64) }
        return Self.padded(key.digest(algorithm, message))
    }

    private static func padded(_ digest: [UInt8]) -> [UInt8] {
        digest + [UInt8](repeating: 0, count: 64 - digest.count)
    }
}
