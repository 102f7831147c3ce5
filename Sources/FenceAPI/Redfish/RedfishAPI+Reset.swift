import FenceCore

extension RedfishAPI {
    /// `POST /redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset`, answered (204) once the action has
    /// finished: fence_redfish reads the state right after.
    func reset(_ reset: ResetRequest, _ token: AccessToken, _ http: HTTPRequest) async throws -> HTTPResponse {
        var origin = http.origin(through: .redfish)
        origin.requester = token.name
        origin.sendingDomain = token.fromDomain.map { .named($0) }
        var action = reset.fenceRequest.action
        var target = reset.fenceRequest.target
        if case .toggle = reset.resetAction {
            // The button acts on the state it finds: read the (authorized) domain once, then act on it by
            // UUID, so the press cannot land on another domain than the one read.
            let domain = try await service.read(
                FenceRequest(action: .status, target: target, origin: origin, access: token)
            )
            action = domain.power == .on ? .off : .on
            target = DomainTarget(domain.uuid)
        }
        let request = FenceRequest(action: action, target: target, origin: origin, access: token)
        _ = try await service.perform(
            request,
            refusedAs: RedfishError.forbidden(
                "token '\(token.name)' has scope '\(token.scope.rawValue)'; Reset needs 'fence'"
            )
        )
        return HTTPResponse(status: 204, headers: [("OData-Version", "4.0"), ("Cache-Control", "no-store")])
    }
}
