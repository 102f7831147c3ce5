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

    static func routeNotFound(_ path: String) -> Problem {
        Problem(status: 404, kind: "not-found", title: "Not found", detail: "no resource at \(path)")
    }

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

    static let internalError = Problem(
        status: 500,
        kind: "internal-error",
        title: "Internal error",
        detail: "the server failed; see its log"
    )

    /// The one mapping from the fence service's errors to HTTP.
    init(_ error: FenceError) {
        switch error {
        case .domainNotFound:
            self.init(status: 404, kind: "domain-not-found", title: "Domain not found", detail: error.description)
        case .domainBusy:
            self.init(status: 409, kind: "domain-busy", title: "Domain busy", detail: error.description)
        case .notRunning:
            self.init(status: 409, kind: "domain-not-running", title: "Domain not running", detail: error.description)
        case .hypervisorUnavailable:
            self.init(
                status: 503,
                kind: "hypervisor-unavailable",
                title: "Hypervisor unavailable",
                detail: error.description,
                headers: [("Retry-After", "5")]
            )
        case .auditUnavailable:
            // The storage error stays in the service's log: it names paths and database internals.
            self.init(
                status: 503,
                kind: "audit-unavailable",
                title: "Audit log unavailable",
                detail: "the audit log cannot be written now, so nothing was done; see the service's log",
                headers: [("Retry-After", "5")]
            )
        case .timedOut:
            self.init(status: 504, kind: "timed-out", title: "Operation timed out", detail: error.description)
        case .operationFailed:
            self.init(
                status: 502,
                kind: "operation-failed",
                title: "Hypervisor operation failed",
                detail: error.description
            )
        case .invalidTarget(let reason):
            self.init(status: 400, kind: "bad-request", title: "Bad request", detail: reason)
        case .refused(_, let reason):
            self.init(status: 403, kind: "forbidden", title: "Forbidden", detail: reason)
        case .unauthenticated:
            // Why the credentials failed stays in the service's log: it would help a guesser.
            self = .unauthorized()
        case .requesterFenced:
            self.init(status: 409, kind: "requester-fenced", title: "Requester fenced", detail: error.description)
        }
    }
}
