import FenceCore
import FoundationEssentials

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

    static let root = "/redfish/v1"

    /// The routes, mounted at `/redfish`. One trailing `/` is allowed: Redfish clients send `/redfish/v1/`.
    var routes: RouteGroup {
        let authenticator = ServiceAuthenticator(service: service, frontEnd: .redfish) { request in
            let credentials = Self.basicCredentials(request)
            // Without Basic credentials there is no user to match: the token check fails as "missing".
            return PresentedCredentials(secret: credentials?.password, user: credentials?.user ?? "")
        }
        var routes = RouteGroup(errors: RedfishError.self, authenticator: authenticator, allowsTrailingSlash: true)
        routes.open(.get, "/") { _, _ in Self.json(.object([("v1", .string(Self.root + "/"))])) }
        routes.open(.get, "/v1") { _, _ in Self.json(serviceRoot()) }
        routes.authenticated(.get, "/v1/Systems") { request, _, token in Self.json(try await systems(token, request)) }
        // Reading a system is how fence_redfish asks for its status: the service reads it as a `status`.
        routes.authenticated(
            .get,
            "/v1/Systems/{id}",
            about: { request, parameters in
                try FenceRequest(.status, targetParameter: "id", of: request, parameters, through: .redfish)
            },
            handler: { _, status, token in Self.json(Self.system(try await permittedDomain(status, token))) }
        )
        routes.authenticated(
            .post,
            "/v1/Systems/{id}/Actions/ComputerSystem.Reset",
            about: ResetRequest.init,
            handler: { request, reset, token in try await self.reset(reset, token, request) }
        )
        return routes
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
        var origin = http.origin(through: .redfish)
        origin.requester = token.name
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
                            ("ResetType@Redfish.AllowableValues", .array(ResetRequest.names.map(JSONValue.string))),
                        ])
                    )
                ])
            ),
        ])
    }

    /// The domain the system id names (a UUID or a name), if the token may read it. A domain outside the
    /// token's patterns answers exactly as an unknown one (404); the refusal is audited as a refused `status`.
    private func permittedDomain(_ status: FenceRequest, _ token: AccessToken) async throws -> DomainInfo {
        try await service.read(status.authorized(by: token))
    }

    // MARK: - Credentials

    /// `Authorization: Basic base64(user:password)`, decoded; nil if absent or malformed.
    static func basicCredentials(_ request: HTTPRequest) -> (user: String, password: String)? {
        guard let header = request.headers["authorization"] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let decoded = Data(base64Encoded: String(parts[1].trimmingSpaces)),
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
