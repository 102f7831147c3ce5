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
