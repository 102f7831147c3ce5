import FenceCore

/// An error answered as RFC 9457 `application/problem+json`, with a stable `type`.
struct Problem: Error, Sendable {
    let status: Int
    /// The last part of the type URI, e.g. `domain-not-found`.
    let kind: String
    let title: String
    let detail: String
    var headers: [(String, String)] = []

    init(status: Int, kind: String, title: String, detail: String, headers: [(String, String)] = []) {
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = headers
    }

    /// The type URI clients switch on.
    var type: String { "urn:fencegate:problem:\(kind)" }

    var response: HTTPResponse {
        var response = HTTPResponse.json(
            .object([
                ("type", .string(type)), ("title", .string(title)), ("status", .integer(Int64(status))),
                ("detail", .string(detail)),
            ]),
            status: status,
            contentType: "application/problem+json"
        )
        response.headers += headers
        return response
    }

    static func badRequest(_ detail: String) -> Problem {
        Problem(status: 400, kind: "bad-request", title: "Bad request", detail: detail)
    }

    static func unauthorized(_ detail: String = "a valid bearer token is required") -> Problem {
        Problem(
            status: 401,
            kind: "unauthorized",
            title: "Unauthorized",
            detail: detail,
            headers: [("WWW-Authenticate", "Bearer realm=\"fencegate\"")]
        )
    }

    static func forbidden(_ detail: String) -> Problem {
        Problem(status: 403, kind: "forbidden", title: "Forbidden", detail: detail)
    }

    static func notFound(_ path: String) -> Problem {
        Problem(status: 404, kind: "not-found", title: "Not found", detail: "no resource at \(path)")
    }

    /// Outside cluster mode, a request for the cluster's view (`GET /cluster`, `?scope=cluster`).
    static let noCluster = Problem(
        status: 404,
        kind: "not-found",
        title: "Not found",
        detail: "no cluster: this host does not run in cluster mode (serve --cluster)"
    )

    static func operationNotFound(_ id: String) -> Problem {
        Problem(status: 404, kind: "operation-not-found", title: "Operation not found", detail: "no operation \(id)")
    }

    static func methodNotAllowed(_ method: String, allowed: [String]) -> Problem {
        Problem(
            status: 405,
            kind: "method-not-allowed",
            title: "Method not allowed",
            detail: "\(method) is not allowed here; use \(allowed.joined(separator: ", "))",
            headers: [("Allow", allowed.joined(separator: ", "))]
        )
    }

    static func payloadTooLarge(limit: Int) -> Problem {
        Problem(
            status: 413,
            kind: "payload-too-large",
            title: "Payload too large",
            detail: "request bodies are limited to \(limit) bytes"
        )
    }

    /// For a request that arrives on an open connection while the server stops (any route, Redfish's too).
    static let shuttingDown = Problem(
        status: 503,
        kind: "shutting-down",
        title: "Shutting down",
        detail: "the service is stopping; ask again shortly, or through another fence device",
        headers: [("Retry-After", "5"), ("Connection", "close")]
    )

    static let internalError = Problem(
        status: 500,
        kind: "internal-error",
        title: "Internal error",
        detail: "the server failed; see its log"
    )

    /// A fence-service error as a problem: its status from `FenceError.httpStatus`, its type from `kind`.
    init(_ error: FenceError) {
        let (kind, title, detail): (String, String, String) =
            switch error {
            case .domainNotFound: ("domain-not-found", "Domain not found", error.description)
            case .domainBusy: ("domain-busy", "Domain busy", error.description)
            case .notRunning: ("domain-not-running", "Domain not running", error.description)
            case .hypervisorUnavailable: ("hypervisor-unavailable", "Hypervisor unavailable", error.description)
            // The storage error stays in the service's log: it names paths and database internals.
            case .auditUnavailable:
                (
                    "audit-unavailable", "Audit log unavailable",
                    "the audit log cannot be written now, so nothing was done; see the service's log"
                )
            case .auditQueryStopped: ("audit-query-stopped", "Audit query stopped", error.description)
            case .timedOut: ("timed-out", "Operation timed out", error.description)
            case .operationFailed: ("operation-failed", "Hypervisor operation failed", error.description)
            case .invalidTarget(let reason): ("bad-request", "Bad request", reason)
            case .refused(_, let reason): ("forbidden", "Forbidden", reason)
            // Why the credentials failed stays in the service's log: it would help a guesser.
            case .unauthenticated:
                (Problem.unauthorized().kind, Problem.unauthorized().title, Problem.unauthorized().detail)
            case .requesterFenced, .requesterFencedInCluster:
                ("requester-fenced", "Requester fenced", error.description)
            case .clusterUnavailable: ("cluster-unavailable", "Cluster unavailable", error.description)
            }
        var headers = error.httpHeaders
        if case .unauthenticated = error { headers += Problem.unauthorized().headers }
        self.init(status: error.httpStatus, kind: kind, title: title, detail: detail, headers: headers)
    }
}

extension Problem: RouterError {
    static func unreadableRequest(_ detail: String) -> Problem { badRequest(detail) }

    /// A path parameter that cannot name what it stands for is a bad request, and costs no audit row.
    static func invalidParameter(_ reason: String, path: String) -> Problem { badRequest(reason) }
}
