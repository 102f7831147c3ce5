import FenceCore
import FoundationEssentials

/// The REST API (`openapi.yaml`): domains and their fence actions, the audit log, health and metrics. Errors
/// are RFC 9457 problems; credentials are `Authorization: Bearer` tokens.
///
/// It only translates: every fence action goes through `FenceService`, which audits it; refusals (401/403) of
/// requests about one domain are audited through the service too.
struct RESTAPI: Sendable {
    let service: FenceService

    /// The routes, mounted at the root of the router.
    var routes: RouteGroup {
        let authenticator = ServiceAuthenticator(service: service, frontEnd: .http) {
            PresentedCredentials(secret: Self.bearer($0))
        }
        var routes = RouteGroup(errors: Problem.self, authenticator: authenticator)
        routes.open(.get, "/healthz") { _, _ in await health() }
        routes.authenticated(.get, "/metrics") { _, _, token in try await metrics(token) }
        routes.authenticated(.get, "/domains") { request, _, token in try await listDomains(request, token) }
        routes.authenticated(
            .get,
            "/domains/{domain}",
            about: { request, parameters in
                try FenceRequest(.status, targetParameter: "domain", of: request, parameters, through: .http)
            },
            handler: { _, status, token in try await showDomain(status, token) }
        )
        for action in FenceAction.fencing {
            routes.authenticated(
                .post,
                "/domains/{domain}/\(action.rawValue)",
                about: { request, parameters in try Self.fenceRequest(action, request, parameters) },
                handler: { _, fenceRequest, token in try await fence(fenceRequest, token) }
            )
        }
        routes.authenticated(.get, "/cluster") { request, _, token in try cluster(request, token) }
        routes.authenticated(.get, "/operations") { request, _, token in
            try await listOperations(request, token: token)
        }
        routes.authenticated(.get, "/operations/{id}") { _, parameters, token in
            try await showOperation(try parameters.require("id"), token: token)
        }
        return routes
    }

    /// The token presented as `Authorization: Bearer …`: nil without the header, empty for another scheme.
    static func bearer(_ request: HTTPRequest) -> String? {
        guard let header = request.headers["authorization"] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return "" }
        return String(parts[1].trimmingSpaces)
    }

    // MARK: - Domains

    private func listDomains(_ http: HTTPRequest, _ token: AccessToken) async throws -> HTTPResponse {
        var origin = http.origin(through: .http)
        origin.requester = token.name
        let domains = try await service.list(origin: origin, visibleTo: token)
        // Cluster mode: each domain's host.
        let hosts = service.domainHosts()
        return .json(.object([("domains", .array(domains.map { Self.domainJSON($0, host: hosts?[$0.uuid]) }))]))
    }

    /// One domain; a domain outside the token's patterns answers exactly as an unknown one (404).
    private func showDomain(_ status: FenceRequest, _ token: AccessToken) async throws -> HTTPResponse {
        let domain = try await service.read(status.authorized(by: token))
        return .json(Self.domainJSON(domain, host: service.domainHosts()?[domain.uuid]))
    }

    /// `POST /domains/{domain}/{action}` as the service performs it, with `?wait=` and `?timeout=`.
    private static func fenceRequest(
        _ action: FenceAction,
        _ http: HTTPRequest,
        _ parameters: PathParameters
    ) throws -> FenceRequest {
        var request = try FenceRequest(action, targetParameter: "domain", of: http, parameters, through: .http)
        request.waitForDomain = try booleanParameter(http.query["wait"], name: "wait") ?? true
        request.timeout = try timeoutParameter(http.query["timeout"])
        return request
    }

    private func fence(_ fenceRequest: FenceRequest, _ token: AccessToken) async throws -> HTTPResponse {
        var request = fenceRequest.authorized(by: token)
        request.origin.sendingDomain = token.fromDomain.map { .named($0) }
        let outcome = try await service.perform(
            request,
            refusedAs: Problem.forbidden(
                "token '\(token.name)' has scope '\(token.scope.rawValue)'; fencing needs 'fence'"
            )
        )
        return .json(
            .object([
                ("operation_id", .integer(outcome.operationID)), ("action", .string(outcome.action.rawValue)),
                ("result", .string("success")), ("domain", Self.domainJSON(outcome.domain)),
                ("power", .string(outcome.power.rawValue)), ("duration_seconds", .number(outcome.duration.seconds)),
                ("note", .optional(outcome.note)),
            ])
        )
    }

    /// Cluster mode: the members as this host sees them, each with its domains (those the token may see).
    private func cluster(_ http: HTTPRequest, _ token: AccessToken) throws -> HTTPResponse {
        guard let status = service.clusterStatus(visibleTo: token) else {
            throw Problem.notFound(http.path)  // not in cluster mode
        }
        let members: [JSONValue] = status.members.map { member in
            .object([
                ("node", .integer(Int64(member.nodeID))), ("pid", .integer(Int64(member.pid))),
                ("local", .bool(member.isLocal)), ("host", .optional(member.hostName)),
                ("standing", .string(member.standing)), ("reason", .optional(member.reason)),
                ("role", .optional(member.role)), ("domains", .array(member.domains.map { Self.domainJSON($0) })),
            ])
        }
        let departed: [JSONValue] = status.departed.map { host in
            .object([
                ("host", .string(host.hostName)), ("confirmed_down", .bool(host.confirmedDown)),
                ("domains", .array(host.domains.map { Self.domainJSON($0) })),
            ])
        }
        return .json(
            .object([
                ("name", .string(status.name)), ("quorate", status.quorate.map { .bool($0) } ?? .null),
                ("members", .array(members)), ("departed", .array(departed)),
            ])
        )
    }

    /// A domain as JSON; with `host` (cluster mode), the host it is on.
    static func domainJSON(_ domain: DomainInfo, host: ClusterDomain? = nil) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("name", .string(domain.name)), ("uuid", .string(domain.uuid)), ("state", .string(domain.state.rawValue)),
            ("power", .string(domain.power.rawValue)), ("persistent", .bool(domain.isPersistent)),
        ]
        if let host { fields += [("host", .string(host.host)), ("host_left", .bool(host.hostLeft))] }
        return .object(fields)
    }

    // MARK: - Health and metrics

    /// Needs no credentials: answered from one shared, recent check of each part (see `FenceService.health`),
    /// so a flood of health checks costs the hypervisor and the disk no more than one check a second.
    private func health() async -> HTTPResponse {
        let (hypervisorUp, auditLogWritable) = await service.health()
        let healthy = hypervisorUp && auditLogWritable
        var fields: [(String, JSONValue)] = [
            ("status", .string(healthy ? "ok" : "unavailable")),
            ("hypervisor", .string(hypervisorUp ? "ok" : "unavailable")),
            ("audit_log", .string(auditLogWritable ? "ok" : "unavailable")),
        ]
        // Cluster mode: this host's partition's quorum, shown, not (yet) a reason for 503.
        if let quorate = service.clusterQuorum() {
            fields.append(("cluster", .string(quorate.map { $0 ? "quorate" : "not-quorate" } ?? "unknown")))
        }
        return .json(.object(fields), status: healthy ? 200 : 503)
    }

    /// Metrics count every domain's operations and refusals: a token limited to some domains could tell from
    /// them whether a domain it may not see exists, so it gets a 403. Each scrape checks the audit log first
    /// (as `/healthz` does, at most one small commit a second), so its gauge is as fresh as the scrape.
    private func metrics(_ token: AccessToken) async throws -> HTTPResponse {
        guard token.domainPatterns.isEmpty else {
            throw Problem.forbidden(
                "token '\(token.name)' is limited to some domains; the metrics need a token for all domains"
            )
        }
        _ = try? await service.checkAuditLog()
        return HTTPResponse(
            status: 200,
            headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Cache-Control", "no-store")],
            body: service.metrics.exposition()
        )
    }

    // MARK: - Query parameters

    static func booleanParameter(_ value: String?, name: String) throws -> Bool? {
        switch value {
        case nil: return nil
        case "true": return true
        case "false": return false
        default: throw Problem.badRequest("\(name) must be true or false")
        }
    }

    static func timeoutParameter(_ value: String?) throws -> Duration? {
        guard let value else { return nil }
        guard let seconds = Double(value), seconds >= 1, seconds <= 3600 else {
            throw Problem.badRequest("timeout must be a number of seconds from 1 to 3600")
        }
        return .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }
}
