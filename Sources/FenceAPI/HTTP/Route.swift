/// One entry of a route table: a method and a path pattern, who may call it, and its handler.
struct Route: Sendable {
    /// What a route needs before its handler runs.
    enum Access: Sendable, Equatable {
        /// No credentials.
        case open
        /// A valid token; a refusal is logged only, as the request names no one domain.
        case token
        /// A valid token; a refusal is audited, as a refusal of the domain request the route reads first.
        case tokenAboutOneDomain
    }

    /// Answers a request that matched, given its path parameters; for a route that needs a token, the
    /// authentication step runs first, inside it.
    typealias Handler = @Sendable (HTTPRequest, PathParameters) async throws -> HTTPResponse

    let method: HTTPMethod
    let pattern: RoutePattern
    let access: Access
    let handler: Handler
}
