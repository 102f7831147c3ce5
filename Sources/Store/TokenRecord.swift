public import FoundationEssentials

/// A stored API token. The secret itself is never stored, only a digest of it.
public struct TokenRecord: Sendable, Equatable {
    /// Unique, chosen by the administrator; recorded as the requester in the audit log.
    public var name: String
    /// The non-secret part of the token text, used to find the record.
    public var publicID: String
    /// Hex digest of the secret part (FenceCore decides the algorithm).
    public var secretHash: String
    /// `read` or `fence`.
    public var scope: String
    /// Glob patterns of domain names the token may see and act on; empty means every domain.
    public var domainPatterns: [String]
    public var createdAt: Date
    /// Set once revoked; a revoked token is refused at once.
    public var revokedAt: Date?
    /// The domain (name or UUID) whose cluster node uses the token, if it was given: its requests come from
    /// that domain (for fence races).
    public var fromDomain: String?

    public init(
        name: String,
        publicID: String,
        secretHash: String,
        scope: String,
        domainPatterns: [String],
        createdAt: Date,
        revokedAt: Date? = nil,
        fromDomain: String? = nil
    ) {
        self.name = name
        self.publicID = publicID
        self.secretHash = secretHash
        self.scope = scope
        self.domainPatterns = domainPatterns
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.fromDomain = fromDomain
    }
}
