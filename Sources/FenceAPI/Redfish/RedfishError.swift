import FenceCore

/// A Redfish error answer: the status and the standard error body (`error.code`, `error.message`, and one
/// `@Message.ExtendedInfo` entry from the Base message registry).
struct RedfishError: Error {
    let status: Int
    /// A message of the Base registry, e.g. `ResourceMissingAtURI`.
    let messageID: String
    let message: String
    let resolution: String
    var headers: [(String, String)] = []

    static let registry = "Base.1.8"

    var response: HTTPResponse {
        let body = JSONValue.object([
            (
                "error",
                .object([
                    ("code", .string("\(Self.registry).\(messageID)")),
                    ("message", .string(message)),
                    (
                        "@Message.ExtendedInfo",
                        .array([
                            .object([
                                ("@odata.type", .string("#Message.v1_1_1.Message")),
                                ("MessageId", .string("\(Self.registry).\(messageID)")),
                                ("Message", .string(message)),
                                ("Severity", .string(status >= 500 ? "Critical" : "Warning")),
                                ("MessageSeverity", .string(status >= 500 ? "Critical" : "Warning")),
                                ("Resolution", .string(resolution)),
                            ])
                        ])
                    ),
                ])
            )
        ])
        var response = RedfishAPI.json(body, status: status)
        response.headers += headers
        return response
    }

    static func notFound(_ path: String) -> RedfishError {
        RedfishError(
            status: 404,
            messageID: "ResourceMissingAtURI",
            message: "The resource at the URI \(path) was not found.",
            resolution: "Use a URI from the service root's links (GET /redfish/v1)."
        )
    }

    static func unauthorized() -> RedfishError {
        RedfishError(
            status: 401,
            messageID: "NoValidSession",
            message: "There is no valid session established with the implementation.",
            resolution:
                "Send HTTP Basic credentials: a Fencegate token's name as the user and the token as the password.",
            headers: [("WWW-Authenticate", "Basic realm=\"fencegate\", charset=\"UTF-8\"")]
        )
    }

    static func forbidden(_ why: String) -> RedfishError {
        RedfishError(
            status: 403,
            messageID: "InsufficientPrivilege",
            message:
                "There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation: \(why).",
            resolution:
                "Use a token whose scope and domains allow it (fencegate token create … --scope fence --domains …)."
        )
    }

    static func methodNotAllowed(_ method: String, allowed: [String]) -> RedfishError {
        RedfishError(
            status: 405,
            messageID: "OperationNotAllowed",
            message: "The HTTP method \(method) is not allowed on this resource.",
            resolution: "Use \(allowed.joined(separator: " or ")).",
            headers: [("Allow", allowed.joined(separator: ", "))]
        )
    }

    static func badRequest(_ messageID: String, _ message: String, resolution: String) -> RedfishError {
        RedfishError(status: 400, messageID: messageID, message: message, resolution: resolution)
    }

}

extension RedfishError: RouterError {
    static let internalError = RedfishError(
        status: 500,
        messageID: "InternalError",
        message: "The request failed due to an internal service error.",
        resolution: "See the service's log."
    )

    /// A request the router could not read (a malformed escape, not UTF-8).
    static func unreadableRequest(_ detail: String) -> RedfishError {
        badRequest(
            "GeneralError",
            "The request could not be read: \(detail).",
            resolution: "Send the path percent-encoded as UTF-8, and the header fields and query in UTF-8."
        )
    }

    /// An id that cannot name a domain names no system: answered as any unknown resource.
    static func invalidParameter(_ reason: String, path: String) -> RedfishError { notFound(path) }

    /// A fence-service error as Redfish answers it: its status from `FenceError.httpStatus`, a message of the
    /// Base registry for its kind.
    init(_ error: FenceError) {
        let readState = "Read the system's PowerState; the audit log has the outcome."
        let (messageID, message, resolution): (String, String, String) =
            switch error {
            case .domainNotFound:
                ("ResourceMissingAtURI", error.description, "List the systems at /redfish/v1/Systems.")
            case .domainBusy:
                ("ResourceInUse", error.description, "Retry when the operation under way has finished.")
            case .notRunning:
                (
                    "ResourceInStandby",
                    "The request could not be performed because the resource is in standby: \(error.description).",
                    "Power the system on first (ResetType On)."
                )
            case .hypervisorUnavailable:
                ("ServiceTemporarilyUnavailable", error.description, "Retry later; nothing was done.")
            // The storage error stays in the service's log: it names paths and database internals.
            case .auditUnavailable:
                (
                    "ServiceTemporarilyUnavailable", "The audit log cannot be written now, so nothing was done.",
                    "Retry later; the service's log says why."
                )
            case .invalidTarget:
                ("GeneralError", error.description, "Name a system by an Id listed at /redfish/v1/Systems.")
            case .refused(_, let reason):
                (
                    RedfishError.forbidden(reason).messageID, RedfishError.forbidden(reason).message,
                    RedfishError.forbidden(reason).resolution
                )
            case .unauthenticated:
                (
                    RedfishError.unauthorized().messageID, RedfishError.unauthorized().message,
                    RedfishError.unauthorized().resolution
                )
            case .requesterFenced, .requesterFencedInCluster:
                (
                    "OperationNotAllowed", "The operation was not allowed: \(error.description).",
                    "None: the node that asked is being fenced, or was fenced moments ago."
                )
            case .clusterUnavailable:
                ("ServiceTemporarilyUnavailable", error.description, "Retry later, or see the cluster's status.")
            // Redfish reads no audit log; mapped for completeness.
            case .auditQueryStopped: ("GeneralError", error.description, "Narrow the query.")
            case .timedOut: ("OperationTimeout", error.description, readState)
            case .operationFailed: ("GeneralError", error.description, readState)
            }
        var headers = error.httpHeaders
        if case .unauthenticated = error { headers += RedfishError.unauthorized().headers }
        self.init(
            status: error.httpStatus,
            messageID: messageID,
            message: message,
            resolution: resolution,
            headers: headers
        )
    }
}
