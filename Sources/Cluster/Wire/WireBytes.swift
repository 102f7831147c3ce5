import FoundationEssentials
import Store

/// Why bytes from another host could not be read as a cluster message.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Fewer bytes than the field needs.
    case truncated(field: String)
    /// A length beyond its field's bound.
    case tooLong(field: String, length: Int, limit: Int)
    /// Not a Fencegate cluster message at all.
    case notFencegate
    /// A protocol version this host does not speak (see `ClusterMessage.protocolVersion`).
    case unsupportedVersion(UInt16)
    /// A message kind this version does not define.
    case unknownKind(UInt16)
    /// Bytes left over after the last field.
    case trailingBytes(Int)
    /// A text field that is not UTF-8.
    case notUTF8(field: String)
    /// A value outside its field's range.
    case invalid(field: String)

    public var description: String {
        switch self {
        case .truncated(let field): "truncated at \(field)"
        case .tooLong(let field, let length, let limit): "\(field) of \(length) bytes exceeds \(limit)"
        case .notFencegate: "not a Fencegate cluster message"
        case .unsupportedVersion(let version):
            "protocol version \(version) (this host speaks \(ClusterMessage.protocolVersion))"
        case .unknownKind(let kind): "unknown message kind \(kind)"
        case .trailingBytes(let count): "\(count) bytes after the last field"
        case .notUTF8(let field): "\(field) is not UTF-8"
        case .invalid(let field): "\(field) is out of range"
        }
    }
}

/// Writes big-endian integers and length-prefixed fields.
struct WireWriter {
    private(set) var bytes: [UInt8] = []

    mutating func write(_ value: UInt8) { bytes.append(value) }

    mutating func write(_ value: UInt16) {
        bytes += [UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    mutating func write(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    mutating func write(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    /// An optional text: a presence byte, then the text.
    mutating func write(optional text: String?) {
        write(UInt8(text == nil ? 0 : 1))
        if let text { write(text: text) }
    }

    /// An optional signed 64-bit number: a presence byte, then the number.
    mutating func write(optional number: Int64?) {
        write(UInt8(number == nil ? 0 : 1))
        if let number { write(UInt64(bitPattern: number)) }
    }

    /// Raw bytes of a known size (no length prefix).
    mutating func write(raw: [UInt8]) { bytes += raw }

    /// A UTF-8 text with a 16-bit length; the caller keeps it within its field's bound.
    mutating func write(text: String) {
        let utf8 = Array(text.utf8)
        precondition(utf8.count <= Int(UInt16.max), "a wire text is at most 65535 bytes")
        write(UInt16(utf8.count))
        bytes += utf8
    }
}

/// Reads what `WireWriter` writes, never past the end and never more than a field's bound.
struct WireReader {
    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    mutating func raw(_ count: Int, field: String) throws(WireError) -> [UInt8] {
        guard count <= remaining else { throw .truncated(field: field) }
        defer { position += count }
        return Array(bytes[position..<position + count])
    }

    mutating func uint8(_ field: String) throws(WireError) -> UInt8 { try raw(1, field: field)[0] }

    mutating func uint16(_ field: String) throws(WireError) -> UInt16 {
        try raw(2, field: field).reduce(0) { $0 << 8 | UInt16($1) }
    }

    mutating func uint32(_ field: String) throws(WireError) -> UInt32 {
        try raw(4, field: field).reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func uint64(_ field: String) throws(WireError) -> UInt64 {
        try raw(8, field: field).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A text written by `write(text:)`, at most `limit` bytes.
    mutating func text(_ field: String, limit: Int) throws(WireError) -> String {
        let length = Int(try uint16("\(field) length"))
        guard length <= limit else { throw .tooLong(field: field, length: length, limit: limit) }
        guard let text = String(validating: try raw(length, field: field), as: UTF8.self) else {
            throw .notUTF8(field: field)
        }
        return text
    }

    /// A text written by `write(optional:)`.
    mutating func optionalText(_ field: String, limit: Int) throws(WireError) -> String? {
        switch try uint8("\(field) present") {
        case 0: return nil
        case 1: return try text(field, limit: limit)
        default: throw .invalid(field: "\(field) present")
        }
    }

    /// A time, as microseconds since 1970, that a `Date` holds exactly (one encoding per message).
    mutating func time(_ field: String) throws(WireError) -> Date {
        let value = Int64(bitPattern: try uint64(field))
        let date = Date(microsecondsSince1970: value)
        guard value.magnitude <= 1 << 53, date.microsecondsSince1970 == value else { throw .invalid(field: field) }
        return date
    }

    /// An optional time, written by `write(optional:)` with `microsecondsSince1970`.
    mutating func optionalTime(_ field: String) throws(WireError) -> Date? {
        switch try uint8("\(field) present") {
        case 0: return nil
        case 1: return try time(field)
        default: throw .invalid(field: "\(field) present")
        }
    }

    /// A number written by `write(optional:)`.
    mutating func optionalInt64(_ field: String) throws(WireError) -> Int64? {
        switch try uint8("\(field) present") {
        case 0: return nil
        case 1: return Int64(bitPattern: try uint64(field))
        default: throw .invalid(field: "\(field) present")
        }
    }

    /// Throws if bytes are left.
    func end() throws(WireError) {
        guard remaining == 0 else { throw .trailingBytes(remaining) }
    }
}

extension WireWriter {
    /// A CPG member: its node id, then its process id.
    mutating func write(_ member: CPGMember) {
        write(member.nodeID)
        write(member.pid)
    }
}

extension WireReader {
    /// A CPG member written by `WireWriter.write(_:)`; `role` names its fields in errors ("receiver node").
    mutating func member(_ role: String) throws(WireError) -> CPGMember {
        CPGMember(nodeID: try uint32("\(role) node"), pid: try uint32("\(role) pid"))
    }
}
