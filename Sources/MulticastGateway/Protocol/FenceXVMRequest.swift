public import FenceCore
import FoundationEssentials

/// The operations a fence_xvm request can carry (the packet's first byte).
public enum FenceXVMOperation: UInt8, Sendable, CaseIterable {
    case null = 0
    case off = 1
    case reboot = 2
    case on = 3
    case status = 4
    /// fence_xvm's `monitor`: is the backend reachable?
    case devstatus = 5
    /// `list` and `list-status`.
    case hostlist = 6
}

/// One 176-byte fence_xvm request, parsed with bounds checks and explicit byte order.
///
/// Layout (protocol doc §2): request u8, hashtype u8, addrlen u8, flags u8, domain[64], address[28] (network
/// order), port u16 LE, random[6], seqno u32 LE, family u32 LE, hash[64].
public struct FenceXVMRequest: Sendable, Equatable {
    public static let size = 176
    static let hashOffset = 112

    /// The raw request byte; unknown values are kept (the daemon answers them with failure after auth).
    public var requestCode: UInt8
    public var hashType: UInt8
    public var addressLength: UInt8
    public var flags: UInt8
    /// The 64 bytes of the domain field as received, so that re-encoding (and so signature checking) sees
    /// exactly the bytes that were signed, including anything after the name's NUL.
    public var domainField: [UInt8]

    /// The domain text: the field up to its first NUL (at most 63 bytes from a conforming client), for
    /// display and the audit log (bytes that are not UTF-8 are shown replaced). Setting it writes the name
    /// (at most 63 bytes), NUL-padded.
    public var domain: String {
        get { String(decoding: domainField.prefix { $0 != 0 }, as: UTF8.self) }
        set { domainField = Self.domainField(newValue) }
    }

    /// The domain text if the field up to its first NUL is valid UTF-8, else nil: a name libvirt could hold
    /// is looked up with exactly the bytes the client sent, never with a repaired copy of them.
    public var domainText: String? {
        String(validating: domainField.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// `name` as the domain field carries it: at most 63 bytes, NUL-padded to 64.
    private static func domainField(_ name: String) -> [UInt8] {
        let bytes = Array(name.utf8.prefix(63))
        return bytes + [UInt8](repeating: 0, count: 64 - bytes.count)
    }
    /// The callback address bytes (4 or 16 used).
    public var address: [UInt8]
    public var port: UInt16
    public var random: [UInt8]
    public var sequenceNumber: UInt32
    /// 2 for IPv4, 10 for IPv6.
    public var family: UInt32
    public var hash: [UInt8]

    /// Why bytes are not a request.
    public enum ParseError: Error, Equatable {
        case wrongSize(Int)
    }

    public var operation: FenceXVMOperation? { FenceXVMOperation(rawValue: requestCode) }

    /// Parses exactly 176 bytes; every field is kept as received (see `domainField`).
    public init(bytes: [UInt8]) throws(ParseError) {
        guard bytes.count == Self.size else { throw .wrongSize(bytes.count) }
        requestCode = bytes[0]
        hashType = bytes[1]
        addressLength = bytes[2]
        flags = bytes[3]
        domainField = Array(bytes[4..<68])
        address = Array(bytes[68..<96])
        port = UInt16(bytes[96]) | UInt16(bytes[97]) << 8
        random = Array(bytes[98..<104])
        sequenceNumber = Self.littleEndian32(bytes, at: 104)
        family = Self.littleEndian32(bytes, at: 108)
        hash = Array(bytes[112..<176])
    }

    /// Builds a request (for clients and tests); sign it with `signed(hashType:key:)`.
    public init(
        operation: FenceXVMOperation,
        domain: String,
        address: [UInt8],
        port: UInt16,
        sequenceNumber: UInt32,
        family: UInt32
    ) {
        requestCode = operation.rawValue
        hashType = 0
        addressLength = UInt8(address.count)
        flags = 0
        domainField = Self.domainField(domain)
        self.address = address + [UInt8](repeating: 0, count: max(0, 28 - address.count))
        self.port = port
        random = [UInt8](repeating: 0, count: 6)
        self.sequenceNumber = sequenceNumber
        self.family = family
        hash = [UInt8](repeating: 0, count: 64)
    }

    /// The 176 wire bytes.
    public var bytes: [UInt8] {
        var bytes = [requestCode, hashType, addressLength, flags]
        bytes += domainField
        bytes += Array(address.prefix(28)) + [UInt8](repeating: 0, count: max(0, 28 - address.count))
        bytes += [UInt8(port & 0xFF), UInt8(port >> 8)]
        bytes += Array(random.prefix(6)) + [UInt8](repeating: 0, count: max(0, 6 - random.count))
        bytes += Self.littleEndianBytes(sequenceNumber) + Self.littleEndianBytes(family)
        bytes += Array(hash.prefix(64)) + [UInt8](repeating: 0, count: max(0, 64 - hash.count))
        return bytes
    }

    /// A copy signed as fence_xvm signs: fresh random bytes (unless `none`), then H(key ‖ packet with zero hash).
    public func signed(hashType: HashType, key: [UInt8], random: [UInt8]? = nil) throws -> FenceXVMRequest {
        var copy = self
        copy.hashType = hashType.rawValue
        copy.hash = [UInt8](repeating: 0, count: 64)
        copy.random = hashType == .none ? [UInt8](repeating: 0, count: 6) : try (random ?? SecureRandom.bytes(count: 6))
        copy.hash = hashType.paddedDigest(key: key, copy.bytes)
        return copy
    }

    /// Checks the signature as fence_virtd does (protocol doc §3): the hash type must be at least
    /// `minimumHash` and known; `none` passes only when allowed; a signed packet needs a key, and all 64 hash
    /// bytes must equal H(key ‖ packet with a zero hash field), zero-padded. Compared in constant time.
    public func isAuthentic(key: [UInt8], minimumHash: HashType) -> Bool {
        verifies(minimumHash: minimumHash, keyIsEmpty: key.isEmpty) { $0.paddedDigest(key: key, $1) }
    }

    /// As `isAuthentic(key:minimumHash:)`, from the key hashed once (the gateway's).
    public func isAuthentic(key: KeyedDigest, minimumHash: HashType) -> Bool {
        verifies(minimumHash: minimumHash, keyIsEmpty: key.keyIsEmpty) { $0.paddedDigest(key: key, $1) }
    }

    /// The check of `isAuthentic`, with `digest` giving H(key ‖ message) in a hash type.
    private func verifies(
        minimumHash: HashType,
        keyIsEmpty: Bool,
        _ digest: (HashType, [UInt8]) -> [UInt8]
    ) -> Bool {
        guard hashType >= minimumHash.rawValue, let type = HashType(rawValue: hashType) else { return false }
        guard type != .none else { return true }
        guard !keyIsEmpty else { return false }
        var unsigned = self
        unsigned.hash = [UInt8](repeating: 0, count: 64)
        return constantTimeEquals(digest(type, unsigned.bytes), hash)
    }

    /// The address to call back, from the packet (never the UDP source), or nil if the family is unknown.
    public var callbackAddress: SocketAddress? {
        switch family {
        case 2: return SocketAddress(ipv4: Array(address.prefix(4)), port: port)
        case 10: return SocketAddress(ipv6: Array(address.prefix(16)), port: port)
        default: return nil
        }
    }

    /// The requester's identity for groups and the audit log: the packet's address as text.
    public var requesterIdentity: String? { callbackAddress?.host }

    private static func littleEndian32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }

    private static func littleEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF), UInt8((value >> 16) & 0xFF), UInt8(value >> 24)]
    }
}
