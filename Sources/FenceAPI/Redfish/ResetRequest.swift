import FenceCore
import FoundationEssentials
import Glibc

/// A `ComputerSystem.Reset` as asked: the system and the `ResetType` from the JSON body, read before the
/// credentials are checked (a refused authentication is audited as a refusal of `fenceRequest`).
struct ResetRequest: DomainRequest {
    /// What a `ResetType` does.
    enum ResetAction: Sendable {
        case action(FenceAction)
        /// On if off, else off: a press of the power button, held until the domain changes.
        case toggle
    }

    /// The `ResetType` values served, and what each one does.
    static let resetTypes: [(String, ResetAction)] = [
        ("On", .action(.on)), ("ForceOff", .action(.off)), ("ForceRestart", .action(.reboot)),
        ("GracefulShutdown", .action(.shutdown)), ("GracefulRestart", .action(.gracefulReboot)),
        ("PushPowerButton", .toggle), ("Nmi", .action(.nmi)),
    ]

    /// The `ResetType` values, in the order systems list them.
    static var names: [String] { resetTypes.map(\.0) }

    let resetAction: ResetAction
    /// The action on the system, without a requester yet; for a press of the power button, `off` (its
    /// refusals are audited as refused offs).
    let fenceRequest: FenceRequest

    /// Reads the body first, then the system id: a malformed body is a 400 whatever the id.
    init(_ http: HTTPRequest, _ parameters: PathParameters) throws {
        let resetType = try Self.resetType(http.body)
        guard let (_, resetAction) = Self.resetTypes.first(where: { $0.0 == resetType }) else {
            throw RedfishError.badRequest(
                "ActionParameterValueNotInList",
                "The value \(resetType) for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.",
                resolution: "Use one of \(Self.names.joined(separator: ", "))."
            )
        }
        let action: FenceAction
        switch resetAction {
        case .action(let fenceAction): action = fenceAction
        case .toggle: action = .off
        }
        self.resetAction = resetAction
        fenceRequest = try FenceRequest(action, targetParameter: "id", of: http, parameters, through: .redfish)
    }

    /// `ResetType` from the action's JSON body.
    private static func resetType(_ body: [UInt8]) throws -> String {
        // A name given twice is refused: parsers disagree on which one counts (the first here, the last in
        // Python's and Foundation's), and a proxy that checks one must not see another acted on.
        guard let object = try? JSONDecoder().decode(ResetBody.self, from: Data(body)),
            JSONMemberNames(body).names?.filter({ $0 == "ResetType" }).count ?? 0 <= 1
        else {
            throw RedfishError.badRequest(
                "MalformedJSON",
                "The request body submitted was malformed JSON and could not be parsed by the receiving service.",
                resolution: "Send a JSON object such as {\"ResetType\": \"ForceOff\"}."
            )
        }
        guard let value = object.resetType else {
            throw RedfishError.badRequest(
                "ActionParameterMissing",
                "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.",
                resolution:
                    "Send {\"ResetType\": \"ForceOff\"} (or another of the system's ResetType@Redfish.AllowableValues)."
            )
        }
        guard case .text(let text) = value else {
            throw RedfishError.badRequest(
                "ActionParameterValueTypeError",
                "The value for the parameter ResetType in the action ComputerSystem.Reset is of a different type than the parameter can accept.",
                resolution: "ResetType is a string."
            )
        }
        return text
    }
}

/// The body of a Reset action: a JSON object whose `ResetType` may be missing or of another type than a string
/// (each answered with its own Redfish message); anything else fails to decode (malformed JSON).
private struct ResetBody: Decodable {
    enum Value {
        case text(String)
        case notText
    }

    private enum Key: String, CodingKey {
        case resetType = "ResetType"
    }

    let resetType: Value?

    init(from decoder: any Decoder) throws {
        let object = try decoder.container(keyedBy: Key.self)
        guard object.contains(.resetType) else {
            resetType = nil
            return
        }
        resetType = (try? object.decode(String.self, forKey: .resetType)).map(Value.text) ?? .notText
    }
}

/// The names of a JSON object's members, unescaped, in order, repeats kept, for a body that `JSONDecoder` has
/// already accepted (a decoded object keeps one value per name and does not tell which). `names` is nil if the
/// text is not an object.
struct JSONMemberNames {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var names: [String]? {
        var scanner = self
        return scanner.scanObject()
    }

    private mutating func scanObject() -> [String]? {
        skipSpace()
        guard next() == UInt8(ascii: "{") else { return nil }
        var names: [String] = []
        skipSpace()
        if peek() == UInt8(ascii: "}") { return names }
        while true {
            skipSpace()
            guard let name = scanString() else { return nil }
            names.append(name)
            skipSpace()
            guard next() == UInt8(ascii: ":"), skipValue() else { return nil }
            skipSpace()
            switch next() {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "}"): return names
            default: return nil
            }
        }
    }

    /// A string at `index` (its opening quote), unescaped; nil if there is none.
    private mutating func scanString() -> String? {
        guard next() == UInt8(ascii: "\"") else { return nil }
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() {
            scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
            raw.removeAll()
        }
        while let byte = next() {
            switch byte {
            case UInt8(ascii: "\""):
                flush()
                return String(scalars)
            case UInt8(ascii: "\\"):
                flush()
                guard let escaped = next() else { return nil }
                switch escaped {
                case UInt8(ascii: "u"):
                    guard var unit = scanHex4() else { return nil }
                    if (0xD800..<0xDC00).contains(unit), index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                        bytes[index + 1] == UInt8(ascii: "u")
                    {
                        let mark = index
                        index += 2
                        if let low = scanHex4(), (0xDC00..<0xE000).contains(low) {
                            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            index = mark  // a lone high surrogate; what follows is read on its own
                        }
                    }
                    scalars.append(Unicode.Scalar(unit) ?? "\u{FFFD}")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                default: scalars.append(Unicode.Scalar(escaped))  // \" \\ \/
                }
            default:
                raw.append(byte)
            }
        }
        return nil
    }

    private mutating func scanHex4() -> UInt32? {
        guard index + 4 <= bytes.count,
            let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16)
        else { return nil }
        index += 4
        return value
    }

    /// Skips one value (a string, an object or array with all it holds, a number or literal).
    private mutating func skipValue() -> Bool {
        skipSpace()
        switch peek() {
        case UInt8(ascii: "\""):
            return scanString() != nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while let byte = peek() {
                if byte == UInt8(ascii: "\"") {
                    guard scanString() != nil else { return false }
                    continue
                }
                index += 1
                if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") { depth += 1 }
                if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") { depth -= 1 }
                if depth == 0 { return true }
            }
            return false
        case nil:
            return false
        default:
            while let byte = peek(), !",}] \t\r\n".utf8.contains(byte) { index += 1 }
            return true
        }
    }

    private mutating func skipSpace() {
        while let byte = peek(), " \t\r\n".utf8.contains(byte) { index += 1 }
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func next() -> UInt8? {
        defer { if index < bytes.count { index += 1 } }
        return peek()
    }
}
