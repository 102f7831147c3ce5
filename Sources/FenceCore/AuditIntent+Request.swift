public import FoundationEssentials
public import Store

extension AuditIntent {
    /// The intent row of a front end's request: what it asks, of what, from whom and where. The domain is
    /// filled in once resolved.
    public init(action: String, target: String, origin: RequestOrigin, requestedAt: Date = Date()) {
        self.init(
            source: origin.frontEnd.rawValue,
            requester: origin.requester,
            clientAddress: origin.clientAddress,
            target: target,
            domainName: nil,
            domainUUID: nil,
            action: action,
            requestedAt: requestedAt
        )
    }

    /// The intent row of `request`.
    public init(_ request: FenceRequest, requestedAt: Date = Date()) {
        self.init(
            action: request.action.rawValue,
            target: request.target.auditText,
            origin: request.origin,
            requestedAt: requestedAt
        )
    }
}
