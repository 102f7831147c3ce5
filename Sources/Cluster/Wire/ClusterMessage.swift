/// A message between Fencegate hosts over CPG.
///
/// Every message is an envelope: the magic `FGCL`, the protocol version (16 bits), the kind (16 bits) and
/// the payload's length (32 bits), all big-endian, then the payload. Sizes are bounded (`maximumSize`, and a
/// limit per field); a message of another protocol version is not decoded (`WireError.unsupportedVersion`),
/// except that its version can be read for the log (`ClusterMessage.version(of:)`).
public enum ClusterMessage: Sendable, Equatable {
    /// A member introduces itself: sent on joining and whenever members join.
    case hello(Hello)

    /// The protocol version this build speaks.
    public static let protocolVersion: UInt16 = 1
    /// The largest message, envelope included (corosync's largest atomic message here is 1,047,552 bytes).
    public static let maximumSize = 1 << 20
    static let magic: [UInt8] = Array("FGCL".utf8)
    static let headerSize = 12

    enum Kind: UInt16 {
        case hello = 1
    }

    /// The bytes on the wire.
    public var encoded: [UInt8] {
        var payload = WireWriter()
        let kind: Kind
        switch self {
        case .hello(let hello):
            kind = .hello
            hello.encode(into: &payload)
        }
        var envelope = WireWriter()
        envelope.write(raw: Self.magic)
        envelope.write(Self.protocolVersion)
        envelope.write(kind.rawValue)
        envelope.write(UInt32(payload.bytes.count))
        envelope.write(raw: payload.bytes)
        precondition(envelope.bytes.count <= Self.maximumSize, "a cluster message exceeds its bound")
        return envelope.bytes
    }

    /// The protocol version a message claims, if it is a Fencegate cluster message at all.
    public static func version(of bytes: [UInt8]) -> UInt16? {
        guard bytes.count >= headerSize, Array(bytes.prefix(4)) == magic else { return nil }
        return UInt16(bytes[4]) << 8 | UInt16(bytes[5])
    }

    /// Decodes a message of this protocol version.
    public init(decoding bytes: [UInt8]) throws(WireError) {
        guard bytes.count <= Self.maximumSize else {
            throw .tooLong(field: "message", length: bytes.count, limit: Self.maximumSize)
        }
        var reader = WireReader(bytes)
        guard try reader.raw(4, field: "magic") == Self.magic else { throw .notFencegate }
        let version = try reader.uint16("version")
        guard version == Self.protocolVersion else { throw .unsupportedVersion(version) }
        let kindValue = try reader.uint16("kind")
        let length = Int(try reader.uint32("length"))
        guard length == reader.remaining else {
            throw length > reader.remaining ? .truncated(field: "payload") : .trailingBytes(reader.remaining - length)
        }
        guard let kind = Kind(rawValue: kindValue) else { throw .unknownKind(kindValue) }
        switch kind {
        case .hello: self = .hello(try Hello(decoding: &reader))
        }
        try reader.end()
    }
}

/// A member's introduction: who it is and what it must share with the others to fence for them.
public struct Hello: Sendable, Equatable {
    /// The fingerprints of its gateway keys (`fencegate key fingerprint`), sorted, each once: members must
    /// hold the same keys, since any of them may answer a guest's request that another one heard.
    public let keyFingerprints: [String]
    /// The member's host name, for the log and `cluster status`.
    public let hostName: String

    static let textLimit = 255
    static let fingerprintLimit = 64

    public init(keyFingerprints: [String], hostName: String) {
        self.keyFingerprints = Array(Set(keyFingerprints.map { truncated($0, to: Self.textLimit) })).sorted()
            .prefix(Self.fingerprintLimit).map { $0 }
        self.hostName = truncated(hostName, to: Self.textLimit)
    }

    func encode(into writer: inout WireWriter) {
        writer.write(UInt16(keyFingerprints.count))
        for fingerprint in keyFingerprints { writer.write(text: fingerprint) }
        writer.write(text: hostName)
    }

    init(decoding reader: inout WireReader) throws(WireError) {
        let count = Int(try reader.uint16("key fingerprint count"))
        guard count <= Self.fingerprintLimit else {
            throw .tooLong(field: "key fingerprints", length: count, limit: Self.fingerprintLimit)
        }
        var fingerprints: [String] = []
        for _ in 0..<count { fingerprints.append(try reader.text("key fingerprint", limit: Self.textLimit)) }
        keyFingerprints = fingerprints
        hostName = try reader.text("host name", limit: Self.textLimit)
    }
}

/// `text` cut to at most `limit` bytes of UTF-8, at a character boundary.
func truncated(_ text: String, to limit: Int) -> String {
    var result = ""
    var size = 0
    for character in text {
        size += character.utf8.count
        guard size <= limit else { break }
        result.append(character)
    }
    return result
}
