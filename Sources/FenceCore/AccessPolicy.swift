/// Who may do what to which domain: decided by the fence service on the domain a request's target resolved
/// to, so that what is authorized is exactly what libvirt acts on.
///
/// Front ends attach a policy to each request: a token's scope and domain patterns (`AccessToken`),
/// fence_xvm's groups, or `UnrestrictedAccess` for the local command line.
public protocol AccessPolicy: Sendable {
    /// Why `request` may not go ahead, or nil if it may.
    ///
    /// - Parameters:
    ///   - domain: the domain the target resolved to, or nil if no domain has that name or UUID (a policy
    ///     may still refuse, e.g. fence_virtd's groups answer "permission denied" before any lookup).
    ///   - lookup: looks domains up (hypervisor calls); for policies whose entries might name another domain
    ///     than the resolved one (names that differ in case only).
    func refusal(
        of request: FenceRequest,
        on domain: DomainInfo?,
        lookup: DomainLookup
    ) async throws(FenceError) -> AccessRefusal?

    /// Whether a listing shows `domain`; `all` is the whole listing (every domain defined).
    func lists(_ domain: DomainInfo, among all: [DomainInfo]) -> Bool

    /// True if `request` may go ahead on `domain`, decided from the policy alone, at once (no lookup, no
    /// suspension); false if it may not or if only `refusal` can tell. What this allows, `refusal` allows.
    func allowsAtOnce(_ request: FenceRequest, on domain: DomainInfo) -> Bool
}

extension AccessPolicy {
    /// Never decided at once: `refusal` decides.
    public func allowsAtOnce(_ request: FenceRequest, on domain: DomainInfo) -> Bool { false }
}

/// Why a policy refused a request.
public struct AccessRefusal: Sendable, Equatable {
    /// For the audit log and the service's log, e.g. "domain 'web3' is outside token 'ops'".
    public var reason: String
    /// True when the requester may not learn that the domain exists: the request is answered exactly as one
    /// for an unknown domain (the audit row still says refused, and why).
    public var concealsDomain: Bool

    public init(reason: String, concealsDomain: Bool) {
        self.reason = reason
        self.concealsDomain = concealsDomain
    }
}

/// Looks domains up for an `AccessPolicy`, within the request's deadline.
public struct DomainLookup: Sendable {
    let all: @Sendable () async throws(FenceError) -> [DomainInfo]

    public init(all: @escaping @Sendable () async throws(FenceError) -> [DomainInfo]) {
        self.all = all
    }

    /// Every domain defined (a hypervisor call).
    public func allDomains() async throws(FenceError) -> [DomainInfo] {
        try await all()
    }
}

/// Everything allowed: the local command line, whose user can reach libvirt anyway.
public struct UnrestrictedAccess: AccessPolicy {
    public init() {}

    public func refusal(
        of request: FenceRequest,
        on domain: DomainInfo?,
        lookup: DomainLookup
    ) async throws(FenceError) -> AccessRefusal? {
        nil
    }

    public func lists(_ domain: DomainInfo, among all: [DomainInfo]) -> Bool { true }

    public func allowsAtOnce(_ request: FenceRequest, on domain: DomainInfo) -> Bool { true }
}

extension String {
    /// Equal when the UTF-8 bytes are equal after folding ASCII letters only, as C's `strcasecmp` in the
    /// C locale (fence_virtd's comparison): "Web1" equals "web1", "É" does not equal "é".
    public func equalsIgnoringASCIICase(_ other: String) -> Bool {
        let left = utf8
        let right = other.utf8
        guard left.count == right.count else { return false }
        return zip(left, right).allSatisfy { lowercasedASCII($0) == lowercasedASCII($1) }
    }
}

private func lowercasedASCII(_ byte: UInt8) -> UInt8 {
    (0x41...0x5A).contains(byte) ? byte + 0x20 : byte
}
