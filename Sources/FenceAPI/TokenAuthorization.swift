import FenceCore

/// Why a token may not run a fence request.
enum TokenRefusal {
    /// The token's scope is `read`.
    case scope
    /// The domain is outside the token's domain patterns.
    case domain(String)
}

extension FenceService {
    /// Checks `token`'s scope and domain patterns against `request`; on a refusal, records it in the audit
    /// log (source and requester from the request) and returns why. A domain that does not exist passes, so
    /// that the service records the attempt and answers "not found".
    func refusal(of request: FenceRequest, by token: AccessToken) async throws -> TokenRefusal? {
        guard token.permits(request.action) else {
            try await recordRefusal(request, reason: "token '\(token.name)' has scope \(token.scope.rawValue)")
            return .scope
        }
        guard !token.domainPatterns.isEmpty else { return nil }
        do {
            let domain = try await self.domain(request.target)
            guard token.permits(domainNamed: domain.name) else {
                try await recordRefusal(request, reason: "domain '\(domain.name)' is outside token '\(token.name)'")
                return .domain(domain.name)
            }
        } catch FenceError.domainNotFound {
            return nil
        }
        return nil
    }
}
