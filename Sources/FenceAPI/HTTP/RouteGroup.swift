import FenceCore
import Logging

/// The routes one front end serves, mounted on a `Router`: the errors they answer with, how they read
/// credentials, and whether a trailing `/` is allowed. Routes are declared with what they need: `open`, or
/// `authenticated` (with or without the domain a request is about); the authenticator runs before the handler.
struct RouteGroup: Sendable {
    /// The error type this group answers with: the router's own failures and the handlers' errors.
    let errors: any RouterError.Type
    let authenticator: any Authenticator
    /// Whether one trailing `/` is ignored (Redfish clients send `/redfish/v1/`); otherwise it names no route.
    let allowsTrailingSlash: Bool
    private(set) var routes: [Route] = []

    init(errors: any RouterError.Type, authenticator: any Authenticator, allowsTrailingSlash: Bool = false) {
        self.errors = errors
        self.authenticator = authenticator
        self.allowsTrailingSlash = allowsTrailingSlash
    }

    /// A route that needs no credentials.
    mutating func open(_ method: HTTPMethod, _ pattern: String, handler: @escaping Route.Handler) {
        routes.append(Route(method: method, pattern: RoutePattern(pattern), access: .open, handler: handler))
    }

    /// A route that needs a valid token and is about no one domain: a refusal is logged, not audited.
    mutating func authenticated(
        _ method: HTTPMethod,
        _ pattern: String,
        handler: @escaping @Sendable (HTTPRequest, PathParameters, AccessToken) async throws -> HTTPResponse
    ) {
        let authenticator = self.authenticator
        let route = Route(method: method, pattern: RoutePattern(pattern), access: .token) { request, parameters in
            try await handler(request, parameters, try await authenticator.token(for: request, about: nil))
        }
        routes.append(route)
    }

    /// A route that needs a valid token and is about one domain. `subject` reads what the request asks first
    /// (its errors are answered before credentials are checked, and cost no audit row); a refused authentication
    /// is then audited as a refusal of the subject's fence request.
    mutating func authenticated<Subject: DomainRequest>(
        _ method: HTTPMethod,
        _ pattern: String,
        about subject: @escaping @Sendable (HTTPRequest, PathParameters) throws -> Subject,
        handler: @escaping @Sendable (HTTPRequest, Subject, AccessToken) async throws -> HTTPResponse
    ) {
        let authenticator = self.authenticator
        let route = Route(method: method, pattern: RoutePattern(pattern), access: .tokenAboutOneDomain) {
            request,
            parameters in
            let about = try subject(request, parameters)
            let token = try await authenticator.token(for: request, about: about.fenceRequest)
            return try await handler(request, about, token)
        }
        routes.append(route)
    }

    /// The answer to an error thrown while answering `request`, in this group's error type. An error that is
    /// neither an HTTP error nor a fence-service error is logged and answered as an internal error.
    func response(to error: any Error, answering request: HTTPRequest, logger: Logger) -> HTTPResponse {
        switch error {
        case let error as any HTTPResponseError:
            return error.response
        case let error as FenceError:
            return errors.init(error).response
        case let error as InvalidPathParameter:
            return errors.invalidParameter(error.reason, path: request.path).response
        default:
            logger.error(
                "unexpected error answering a request",
                metadata: ["http.method": "\(request.method)", "http.path": "\(request.path)", "error": "\(error)"]
            )
            return errors.internalError.response
        }
    }
}
