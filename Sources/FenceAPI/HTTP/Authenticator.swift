import FenceCore

/// The step in front of every route that needs a token (hummingbird's authenticator middleware, as one
/// function): it reads the credentials a request presents and has them checked.
protocol Authenticator: Sendable {
    /// The token `request` presents. Throws `FenceError.unauthenticated` if none is valid; a refusal of a
    /// request about one domain (`subject` given) is audited as a refusal of `subject`.
    func token(for request: HTTPRequest, about subject: FenceRequest?) async throws -> AccessToken
}

/// A request about one domain, as read before its credentials are checked: a failed authentication is audited
/// as a refusal of `fenceRequest` (its action and target, with no requester yet).
protocol DomainRequest: Sendable {
    var fenceRequest: FenceRequest { get }
}

extension FenceRequest: DomainRequest {
    var fenceRequest: FenceRequest { self }
}

/// Credentials as a request presents them, in its front end's scheme.
struct PresentedCredentials: Sendable {
    /// The token; nil when the request carries none.
    var secret: String?
    /// The name the token must have, for schemes that send one (HTTP Basic); nil for any name.
    var user: String?
}

/// Credentials checked by the fence service (`FenceService.authenticate`), which audits the refusal of a
/// request about one domain and only logs the others.
struct ServiceAuthenticator: Authenticator {
    let service: FenceService
    /// The front end requests come through: the audit rows' source.
    let frontEnd: FrontEnd
    /// Reads the credentials from a request, in the front end's scheme (Bearer, Basic).
    let credentials: @Sendable (HTTPRequest) -> PresentedCredentials

    func token(for request: HTTPRequest, about subject: FenceRequest?) async throws -> AccessToken {
        let presented = credentials(request)
        return try await service.authenticate(
            presented.secret,
            user: presented.user,
            origin: request.origin(through: frontEnd),
            about: subject
        )
    }
}
