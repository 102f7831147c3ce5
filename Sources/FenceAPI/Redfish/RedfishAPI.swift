import FenceCore
import Foundation
import Logging

/// The Redfish subset Fencegate serves under `/redfish/v1`, so that Redfish clients such as Pacemaker's
/// unchanged `fence_redfish` fence libvirt domains as they fence physical servers: the service root, the
/// Systems collection (one ComputerSystem per domain the credentials may see), and the
/// `ComputerSystem.Reset` action. Every Reset goes through the fence service and the audit log, with source
/// `redfish` and the token's name as requester; refusals are audited too.
///
/// Credentials: HTTP Basic with a Fencegate token's name as the user and the token itself as the password;
/// the token's scope and domain patterns apply as in the REST API.
struct RedfishAPI: Sendable {
    let service: FenceService
    let logger: Logger

    /// The `ResetType` values served, and the fence action each one runs.
    static let resetTypes: [(String, ResetAction)] = [
        ("On", .action(.on)), ("ForceOff", .action(.off)), ("ForceRestart", .action(.reboot)),
        ("GracefulShutdown", .action(.shutdown)), ("GracefulRestart", .action(.gracefulReboot)),
        ("PushPowerButton", .toggle), ("Nmi", .action(.nmi)),
    ]

    enum ResetAction {
        case action(FenceAction)
        /// On if off, else off: a press of the power button, held until the domain changes.
        case toggle
    }

    static let root = "/redfish/v1"

    /// Answers a request whose path starts with `/redfish`; `segments` are the decoded ones after it.
    func handle(_ request: HTTPRequest, segments: [String]) async -> HTTPResponse {
        do {
            return try await route(request, segments)
        } catch let error as any HTTPResponseError {
            return error.response
        } catch let error as FenceError {
            return RedfishError(error).response
        } catch {
            logger.error("unexpected error answering a Redfish request", metadata: ["error": "\(error)"])
            return RedfishError(
                status: 500,
                messageID: "InternalError",
                message: "The request failed due to an internal service error.",
                resolution: "See the service's log."
            ).response
        }
    }

    private func route(_ request: HTTPRequest, _ segments: [String]) async throws -> HTTPResponse {
        let method = request.method == "HEAD" ? "GET" : request.method
        func only(_ allowed: String) throws {
            guard method == allowed else {
                throw RedfishError.methodNotAllowed(
                    request.method,
                    allowed: allowed == "GET" ? ["GET", "HEAD"] : [allowed]
                )
            }
        }
        switch segments {
        case []:
            try only("GET")
            return Self.json(.object([("v1", .string(Self.root + "/"))]))
        case ["v1"]:
            try only("GET")
            return Self.json(serviceRoot())
        case ["v1", "Systems"]:
            try only("GET")
            let token = try await authenticate(request, action: nil, target: nil)
            return Self.json(try await systems(token, request))
        case let path where path.count == 3 && path[0] == "v1" && path[1] == "Systems":
            try only("GET")
            // An id that cannot name a domain is no system, before anything is looked up or recorded.
            if DomainTarget(path[2]).problem != nil { throw RedfishError.notFound(request.path) }
            let token = try await authenticate(request, action: .status, target: path[2])
            return Self.json(Self.system(try await permittedDomain(path[2], token, request)))
        case let path
        where path.count == 5 && path[0] == "v1" && path[1] == "Systems" && path[3] == "Actions"
            && path[4] == "ComputerSystem.Reset":
            try only("POST")
            return try await reset(path[2], request)
        default:
            throw RedfishError.notFound(request.path)
        }
    }

    // MARK: - Resources

    private func serviceRoot() -> JSONValue {
        .object([
            ("@odata.id", .string(Self.root)), ("@odata.type", .string("#ServiceRoot.v1_11_0.ServiceRoot")),
            ("Id", .string("RootService")), ("Name", .string("Fencegate Redfish service")),
            ("RedfishVersion", .string("1.11.0")), ("UUID", .string(Self.serviceUUID)),
            ("Systems", .object([("@odata.id", .string(Self.root + "/Systems"))])),
            ("Links", .object([])),
        ])
    }

    private func systems(_ token: AccessToken, _ http: HTTPRequest) async throws -> JSONValue {
        let origin = RequestOrigin(frontEnd: .redfish, requester: token.name, clientAddress: http.clientAddress)
        let domains = try await service.list(origin: origin, visibleTo: token)
        return .object([
            ("@odata.id", .string(Self.root + "/Systems")),
            ("@odata.type", .string("#ComputerSystemCollection.ComputerSystemCollection")),
            ("Name", .string("Computer System Collection")),
            ("Members@odata.count", .integer(Int64(domains.count))),
            ("Members", .array(domains.map { .object([("@odata.id", .string(Self.systemPath($0)))]) })),
        ])
    }

    static func systemPath(_ domain: DomainInfo) -> String { root + "/Systems/" + domain.uuid }

    static func system(_ domain: DomainInfo) -> JSONValue {
        let path = systemPath(domain)
        return .object([
            ("@odata.id", .string(path)), ("@odata.type", .string("#ComputerSystem.v1_13_0.ComputerSystem")),
            ("Id", .string(domain.uuid)), ("Name", .string(domain.name)), ("UUID", .string(domain.uuid)),
            ("SystemType", .string("Virtual")), ("PowerState", .string(domain.power == .on ? "On" : "Off")),
            ("Status", .object([("State", .string("Enabled")), ("Health", .string("OK"))])),
            (
                "Actions",
                .object([
                    (
                        "#ComputerSystem.Reset",
                        .object([
                            ("target", .string(path + "/Actions/ComputerSystem.Reset")),
                            ("ResetType@Redfish.AllowableValues", .array(resetTypes.map { .string($0.0) })),
                        ])
                    )
                ])
            ),
        ])
    }

    /// The domain `id` names (a UUID or a name), if the token may read it. A domain outside the token's
    /// patterns answers exactly as an unknown one (404); the refusal is audited as a refused `status`
    /// (reading a system is how fence_redfish asks for its status).
    private func permittedDomain(_ id: String, _ token: AccessToken, _ http: HTTPRequest) async throws -> DomainInfo {
        try await service.read(
            FenceRequest(
                action: .status,
                target: DomainTarget(id),
                origin: RequestOrigin(frontEnd: .redfish, requester: token.name, clientAddress: http.clientAddress),
                access: token
            )
        )
    }

    // MARK: - Reset

    private func reset(_ id: String, _ http: HTTPRequest) async throws -> HTTPResponse {
        let resetType = try Self.resetType(http.body)
        guard let (_, resetAction) = Self.resetTypes.first(where: { $0.0 == resetType }) else {
            throw RedfishError.badRequest(
                "ActionParameterValueNotInList",
                "The value \(resetType) for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.",
                resolution: "Use one of \(Self.resetTypes.map(\.0).joined(separator: ", "))."
            )
        }
        if DomainTarget(id).problem != nil { throw RedfishError.notFound(http.path) }
        var action: FenceAction
        switch resetAction {
        case .action(let fenceAction): action = fenceAction
        case .toggle: action = .off
        }
        let token = try await authenticate(http, action: action, target: id)
        let origin = RequestOrigin(
            frontEnd: .redfish,
            requester: token.name,
            clientAddress: http.clientAddress,
            sendingDomain: token.fromDomain.map { .named($0) }
        )
        var target = DomainTarget(id)
        if case .toggle = resetAction {
            // The button acts on the state it finds: read the (authorized) domain once, then act on it by
            // UUID, so the press cannot land on another domain than the one read.
            let domain = try await service.read(
                FenceRequest(action: .status, target: target, origin: origin, access: token)
            )
            action = domain.power == .on ? .off : .on
            target = DomainTarget(domain.uuid)
        }
        let request = FenceRequest(action: action, target: target, origin: origin, access: token)
        // Finished before the answer goes out: fence_redfish reads the state right after.
        _ = try await service.perform(
            request,
            refusedAs: RedfishError.forbidden(
                "token '\(token.name)' has scope '\(token.scope.rawValue)'; Reset needs 'fence'"
            )
        )
        return HTTPResponse(status: 204, headers: [("OData-Version", "4.0"), ("Cache-Control", "no-store")])
    }

    /// `ResetType` from the action's JSON body.
    private static func resetType(_ body: [UInt8]) throws -> String {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw RedfishError.badRequest(
                "MalformedJSON",
                "The request body submitted was malformed JSON and could not be parsed by the receiving service.",
                resolution: "Send a JSON object such as {\"ResetType\": \"ForceOff\"}."
            )
        }
        guard let value = object["ResetType"] else {
            throw RedfishError.badRequest(
                "ActionParameterMissing",
                "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.",
                resolution:
                    "Send {\"ResetType\": \"ForceOff\"} (or another of the system's ResetType@Redfish.AllowableValues)."
            )
        }
        guard let text = value as? String else {
            throw RedfishError.badRequest(
                "ActionParameterValueTypeError",
                "The value for the parameter ResetType in the action ComputerSystem.Reset is of a different type than the parameter can accept.",
                resolution: "ResetType is a string."
            )
        }
        return text
    }

    // MARK: - Authentication

    /// The token named by HTTP Basic credentials (user: the token's name, password: the token), checked by
    /// the service; a failure answers 401, and is audited as a refusal when the request is about one system
    /// (`action` and `target` given).
    private func authenticate(_ request: HTTPRequest, action: FenceAction?, target: String?) async throws -> AccessToken
    {
        let origin = RequestOrigin(frontEnd: .redfish, requester: nil, clientAddress: request.clientAddress)
        let credentials = Self.basicCredentials(request)
        var about: FenceRequest?
        if let action, let target { about = FenceRequest(action: action, target: DomainTarget(target), origin: origin) }
        // Without Basic credentials there is no user to match: the token check fails as "missing".
        return try await service.authenticate(
            credentials?.password,
            user: credentials?.user ?? "",
            origin: origin,
            about: about
        )
    }

    /// `Authorization: Basic base64(user:password)`, decoded; nil if absent or malformed.
    static func basicCredentials(_ request: HTTPRequest) -> (user: String, password: String)? {
        guard let header = request.headers["authorization"] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let decoded = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    // MARK: - Encoding

    /// A Redfish JSON answer: the media type and OData version the standard asks for.
    static func json(_ value: JSONValue, status: Int = 200) -> HTTPResponse {
        var response = HTTPResponse.json(value, status: status, contentType: "application/json; charset=utf-8")
        response.headers.append(("OData-Version", "4.0"))
        return response
    }

    /// This service root's UUID (Redfish requires one; clients use it to tell services apart): derived from
    /// the host's /etc/machine-id, so it is stable across restarts and differs between hosts.
    static let serviceUUID: String = {
        let machine =
            (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8)) ?? ProcessInfo.processInfo.hostName
        var bytes = Array(
            DigestAlgorithm.sha256.digest(Array("fencegate redfish service root ".utf8), Array(machine.utf8)).prefix(16)
        )
        bytes[6] = (bytes[6] & 0x0F) | 0x50  // version 5 layout (name-based)
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        let hex = bytes.hexString
        let parts = [
            hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4),
            hex.dropFirst(20),
        ]
        return parts.joined(separator: "-")
    }()
}
