import FenceCore

/// An error type a mount answers with (the REST API's `Problem`, Redfish's `RedfishError`): the router builds
/// from it each failure it finds itself, and the answers to the errors a handler throws.
protocol RouterError: HTTPResponseError {
    /// The request could not be read: the path, a header or a query argument is not UTF-8, or the path has a
    /// malformed escape (400).
    static func unreadableRequest(_ detail: String) -> Self
    /// No resource at `path`, as sent (404).
    static func notFound(_ path: String) -> Self
    /// A resource that `method` does not apply to, with the `Allow` header (405).
    static func methodNotAllowed(_ method: String, allowed: [String]) -> Self
    /// A path parameter at `path` that names nothing, and why.
    static func invalidParameter(_ reason: String, path: String) -> Self
    /// A fence-service error, with its status from `FenceError.httpStatus`.
    init(_ error: FenceError)
    /// Any other error (500); the error itself goes to the log only.
    static var internalError: Self { get }
}
