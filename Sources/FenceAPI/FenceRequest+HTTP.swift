import FenceCore

extension HTTPRequest {
    /// Where this request comes from, before its credentials are checked: the front end and the client's
    /// address, no requester yet.
    func origin(through frontEnd: FrontEnd) -> RequestOrigin {
        RequestOrigin(frontEnd: frontEnd, requester: nil, clientAddress: clientAddress, requestID: requestID)
    }
}

extension FenceRequest {
    /// `action` on the domain that the path parameter `name` names, as `http` asks it through `frontEnd`, before
    /// its credentials are checked. A parameter that cannot name a domain throws `InvalidPathParameter`.
    init(
        _ action: FenceAction,
        targetParameter name: String,
        of http: HTTPRequest,
        _ parameters: PathParameters,
        through frontEnd: FrontEnd
    ) throws {
        self.init(
            action: action,
            target: try parameters.require(name, as: DomainTarget.self),
            origin: http.origin(through: frontEnd)
        )
    }

    /// This request as made with `token`: the token's name is the requester, its scope and patterns the access.
    func authorized(by token: AccessToken) -> FenceRequest {
        var request = self
        request.origin.requester = token.name
        request.access = token
        return request
    }
}
