public import FenceCore
import Foundation
public import Logging
import Store
import Synchronization

/// The HTTP API: routes, authentication, and the translation between HTTP and the fence service.
///
/// It only translates: every fence action goes through `FenceService`, which audits it; refusals (401/403)
/// of fence actions are audited through the service too. The contract is `openapi.yaml`.
public final class FenceHTTPAPI: Sendable {
    let service: FenceService
    let logger: Logger
    private let responses = Mutex<[Int: UInt64]>([:])
    /// The Redfish front end under `/redfish`, when enabled.
    private let redfish: RedfishAPI?

    /// - Parameter redfish: serve the Redfish subset under `/redfish` (HTTP Basic credentials: serve it over
    ///   HTTPS; `serve` insists unless plain HTTP is explicitly allowed).
    public init(service: FenceService, logger: Logger, redfish: Bool = false) {
        self.service = service
        self.logger = logger
        self.redfish = redfish ? RedfishAPI(service: service, logger: logger) : nil
    }

    /// Answers one request. Never throws: every failure becomes a problem response.
    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let response: HTTPResponse
        if let redfish, let segments = Self.redfishSegments(request) {
            response = await redfish.handle(request, segments: segments)
        } else {
            response = await answer(request)
        }
        responses.withLock { $0[response.status, default: 0] += 1 }
        logger.debug(
            "http request",
            metadata: [
                "http.method": "\(request.method)", "http.path": "\(request.path)", "http.status": "\(response.status)",
                "peer.address": "\(request.clientAddress ?? "-")",
            ]
        )
        return response
    }

    /// The REST API's answer: a route's response, or the problem a failure maps to.
    private func answer(_ request: HTTPRequest) async -> HTTPResponse {
        do {
            return try await route(request)
        } catch let error as any HTTPResponseError {
            return error.response
        } catch let error as FenceError {
            return Problem(error).response
        } catch {
            logger.error(
                "unexpected error answering a request",
                metadata: ["http.method": "\(request.method)", "http.path": "\(request.path)", "error": "\(error)"]
            )
            return Problem.internalError.response
        }
    }

    /// The decoded path segments after `/redfish` (one trailing `/` allowed, as Redfish clients send
    /// `/redfish/v1/`), or nil if the path is not under `/redfish` or is malformed.
    static func redfishSegments(_ request: HTTPRequest) -> [String]? {
        guard request.isValidUTF8, request.path == "/redfish" || request.path.hasPrefix("/redfish/"),
            var segments = request.pathSegments?.dropFirst(2)
        else { return nil }
        if segments.last == "" { segments = segments.dropLast() }
        guard !segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else { return nil }
        return Array(segments)
    }

    /// Responses sent so far, by status code.
    var responseCounts: [Int: UInt64] { responses.withLock { $0 } }

    private func route(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard request.isValidUTF8 else {
            throw Problem.badRequest("the path, a header or a query argument is not UTF-8")
        }
        guard let allSegments = request.pathSegments else {
            throw Problem.badRequest("the path has a malformed escape, an encoded NUL, or is not UTF-8")
        }
        // "/a/b": ["", "a", "b"]. Empty segments ("//", a trailing "/") and dot segments name no route.
        let segments = Array(allSegments.dropFirst())
        guard request.path.hasPrefix("/"), !segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw Problem.routeNotFound(request.path)
        }
        let method = request.method == "HEAD" ? "GET" : request.method
        func only(_ allowed: String) throws {
            guard method == allowed else {
                throw Problem.methodNotAllowed(request.method, allowed: allowed == "GET" ? ["GET", "HEAD"] : [allowed])
            }
        }
        switch segments.count {
        case 1 where segments[0] == "healthz":
            try only("GET")
            return await health()
        case 1 where segments[0] == "metrics":
            try only("GET")
            // Metrics count every domain's operations and refusals: a token limited to some domains could
            // tell from them whether a domain it may not see exists.
            let token = try await authenticate(request)
            guard token.domainPatterns.isEmpty else {
                throw Problem.forbidden(
                    "token '\(token.name)' is limited to some domains; the metrics need a token for all domains"
                )
            }
            return metrics()
        case 1 where segments[0] == "domains":
            try only("GET")
            return try await listDomains(token: try await authenticate(request), request)
        case 2 where segments[0] == "domains":
            try only("GET")
            return try await showDomain(segments[1], request)
        case 3 where segments[0] == "domains":
            guard let action = FenceAction(rawValue: segments[2]), FenceAction.fencing.contains(action) else {
                throw Problem.routeNotFound(request.path)
            }
            try only("POST")
            return try await fence(action, segments[1], request)
        case 1 where segments[0] == "operations":
            try only("GET")
            return try await listOperations(request, token: try await authenticate(request))
        case 2 where segments[0] == "operations":
            try only("GET")
            return try await showOperation(segments[1], token: try await authenticate(request))
        default:
            throw Problem.routeNotFound(request.path)
        }
    }

    // MARK: - Authentication

    /// The token presented as `Authorization: Bearer …` (a 401 problem if none is valid), checked by the
    /// service, which audits the refusal of a request `about` one domain.
    func authenticate(_ request: HTTPRequest, about fenceRequest: FenceRequest? = nil) async throws -> AccessToken {
        try await service.authenticate(
            Self.bearer(request),
            origin: RequestOrigin(frontEnd: .http, requester: nil, clientAddress: request.clientAddress),
            about: fenceRequest
        )
    }

    static func bearer(_ request: HTTPRequest) -> String? {
        guard let header = request.headers["authorization"] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return "" }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    // MARK: - Domains

    private func listDomains(token: AccessToken, _ http: HTTPRequest) async throws -> HTTPResponse {
        let origin = RequestOrigin(frontEnd: .http, requester: token.name, clientAddress: http.clientAddress)
        let domains = try await service.list(origin: origin, visibleTo: token)
        return .json(.object([("domains", .array(domains.map(Self.domainJSON)))]))
    }

    /// One domain; a domain outside the token's patterns answers exactly as an unknown one (404).
    private func showDomain(_ target: String, _ http: HTTPRequest) async throws -> HTTPResponse {
        try Self.validateDomainParameter(target)
        var request = FenceRequest(
            action: .status,
            target: DomainTarget(target),
            origin: RequestOrigin(frontEnd: .http, requester: nil, clientAddress: http.clientAddress)
        )
        let token = try await authenticate(http, about: request)
        request.origin.requester = token.name
        request.access = token
        return .json(Self.domainJSON(try await service.read(request)))
    }

    private func fence(_ action: FenceAction, _ target: String, _ http: HTTPRequest) async throws -> HTTPResponse {
        try Self.validateDomainParameter(target)
        let wait = try Self.booleanParameter(http.query["wait"], name: "wait") ?? true
        let timeout = try Self.timeoutParameter(http.query["timeout"])
        var request = FenceRequest(
            action: action,
            target: DomainTarget(target),
            origin: RequestOrigin(frontEnd: .http, requester: nil, clientAddress: http.clientAddress),
            timeout: timeout,
            waitForDomain: wait
        )

        let token = try await authenticate(http, about: request)
        request.origin.requester = token.name
        request.origin.sendingDomain = token.fromDomain.map { .named($0) }
        request.access = token
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

    static func domainJSON(_ domain: DomainInfo) -> JSONValue {
        .object([
            ("name", .string(domain.name)), ("uuid", .string(domain.uuid)), ("state", .string(domain.state.rawValue)),
            ("power", .string(domain.power.rawValue)), ("persistent", .bool(domain.isPersistent)),
        ])
    }

    // MARK: - Health and metrics

    /// Needs no credentials: answered from one shared, recent check of each part (see `FenceService.health`),
    /// so a flood of health checks costs the hypervisor and the disk no more than one check a second.
    private func health() async -> HTTPResponse {
        let (hypervisorUp, auditLogWritable) = await service.health()
        let healthy = hypervisorUp && auditLogWritable
        return .json(
            .object([
                ("status", .string(healthy ? "ok" : "unavailable")),
                ("hypervisor", .string(hypervisorUp ? "ok" : "unavailable")),
                ("audit_log", .string(auditLogWritable ? "ok" : "unavailable")),
            ]),
            status: healthy ? 200 : 503
        )
    }

    private func metrics() -> HTTPResponse {
        HTTPResponse(
            status: 200,
            headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Cache-Control", "no-store")],
            body: Array(PrometheusText.render(service.metrics.snapshot, responses: responseCounts).utf8)
        )
    }

    // MARK: - Parameters

    /// Refuses (400) a target that cannot name a domain: empty, over `DomainTarget.maximumBytes` bytes of
    /// UTF-8, or holding a control character. Checked before anything else, so such a request costs no
    /// audit row.
    static func validateDomainParameter(_ value: String) throws {
        if let problem = DomainTarget(value).problem { throw Problem.badRequest(problem) }
    }

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
