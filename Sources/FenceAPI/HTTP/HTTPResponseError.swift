import FenceCore

/// An error that is answered as an HTTP response: the REST API's `Problem` and Redfish's `RedfishError`
/// adopt it, each with its own body, and both take a `FenceError`'s status from `FenceError.httpStatus`.
protocol HTTPResponseError: Error {
    var status: Int { get }
    var response: HTTPResponse { get }
}

extension FenceError {
    /// The one HTTP status of each fence-service error, for every HTTP front end.
    var httpStatus: Int {
        switch self {
        case .invalidTarget: 400
        case .unauthenticated: 401
        case .refused: 403
        case .domainNotFound: 404
        case .domainBusy, .notRunning, .requesterFenced, .requesterFencedInCluster: 409
        case .operationFailed: 502
        case .hypervisorUnavailable, .auditUnavailable, .auditQueryStopped, .clusterUnavailable: 503
        case .timedOut: 504
        }
    }

    /// Headers every HTTP front end sends with this error: `Retry-After` when retrying soon may succeed.
    var httpHeaders: [(String, String)] {
        switch self {
        case .hypervisorUnavailable, .auditUnavailable, .auditQueryStopped, .clusterUnavailable: [("Retry-After", "5")]
        default: []
        }
    }
}
