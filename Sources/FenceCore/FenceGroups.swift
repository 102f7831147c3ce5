import FoundationEssentials

/// Which requester may fence which domain: fence_virtd's `groups` section, with its matching rules
/// (protocol doc §8), decided on the domain a request resolves to.
///
/// Comparisons fold ASCII letters only, as fence_virtd's `strcasecmp` does. Since libvirt tells names apart
/// byte for byte, an entry that differs from a domain's name in ASCII case only stands for that domain only
/// when it can name no other: no domain has the entry's exact name, and no other domain's name differs from
/// it in ASCII case only. With `web1` and `WEB1` both defined, the entry `web1` names `web1`, never `WEB1`,
/// and the entry `Web1` names neither.
public struct FenceGroups: Sendable, Equatable {
    /// One group: requester identities (`ip` entries) and the domains they may fence (`uuid` entries, which
    /// may hold names too).
    public struct Group: Sendable, Equatable {
        public var name: String?
        public var requesters: [String]
        public var domains: [String]

        public init(name: String? = nil, requesters: [String], domains: [String]) {
            self.name = name
            self.requesters = requesters
            self.domains = domains
        }
    }

    public var groups: [Group]

    public init(_ groups: [Group] = []) {
        self.groups = groups
    }

    /// True when no group has any entry: then everything is allowed.
    public var allowsEverything: Bool {
        !groups.contains { !$0.requesters.isEmpty || !$0.domains.isEmpty }
    }

    /// The domain entries of the groups that contain `requester`.
    func domainEntries(for requester: String) -> [String] {
        groups.filter { $0.contains(requester: requester) }.flatMap(\.domains)
    }

    /// fence_virtd's rule on the text of a request: whether `requester` may run on/off/reboot/status on
    /// `domain`, the domain string exactly as the request named it (a group listing only a UUID denies the
    /// name, and the reverse, as upstream does). Used for a domain that does not exist, where there is
    /// nothing else to decide on.
    public func permits(requester: String, domain: String) -> Bool {
        allowsEverything || domainEntries(for: requester).contains { $0.equalsIgnoringASCIICase(domain) }
    }

    /// Whether `domain` is in a list answered to `requester`: its UUID or its name is in a group that contains
    /// the requester; `all` is every domain defined (to tell apart names that differ in case only).
    public func lists(_ domain: DomainInfo, to requester: String, among all: [DomainInfo]) -> Bool {
        allowsEverything
            || domainEntries(for: requester).contains { entry in
                entry.equalsIgnoringASCIICase(domain.uuid) || Self.entry(entry, names: domain, among: all)
            }
    }

    /// Whether `entry` stands for `domain` by name: exactly, or differing in ASCII case only while it can
    /// name no other domain of `all` (none has its exact name, none other matches it ignoring ASCII case).
    static func entry(_ entry: String, names domain: DomainInfo, among all: [DomainInfo]) -> Bool {
        if entry.utf8.elementsEqual(domain.name.utf8) { return true }
        guard entry.equalsIgnoringASCIICase(domain.name) else { return false }
        return !all.contains { other in
            other.uuid != domain.uuid && other.name.equalsIgnoringASCIICase(entry)
        }
    }
}

extension FenceGroups.Group {
    /// A requester that is a UUID (the serial listener's identity) is looked for among the domain entries,
    /// any other among the requester entries; ASCII case is ignored (IPv6 addresses, UUIDs).
    func contains(requester: String) -> Bool {
        let entries = UUID(uuidString: requester) != nil ? domains : requesters
        return entries.contains { $0.equalsIgnoringASCIICase(requester) }
    }
}

/// fence_virtd's groups as the fence service's access policy for one requester.
public struct GroupAccess: AccessPolicy {
    public let groups: FenceGroups
    /// The requester's identity: the packet's address (multicast) or the TCP peer.
    public let requester: String

    public init(groups: FenceGroups, requester: String) {
        self.groups = groups
        self.requester = requester
    }

    /// A request naming a UUID needs an entry with that UUID; one naming a domain by name needs an entry for
    /// that very domain (see `FenceGroups`); one naming no existing domain is judged on its text, as
    /// fence_virtd judges every request. A refusal is answered "permission denied", as fence_virtd does.
    public func refusal(
        of request: FenceRequest,
        on domain: DomainInfo?,
        lookup: DomainLookup
    ) async throws(FenceError) -> AccessRefusal? {
        guard !groups.allowsEverything else { return nil }
        let refusal = AccessRefusal(
            reason: "groups do not allow \(requester) to \(request.action.rawValue) '\(request.target.text)'",
            concealsDomain: false
        )
        guard let domain else {
            return groups.permits(requester: requester, domain: request.target.text) ? nil : refusal
        }
        if allowsAtOnce(request, on: domain) { return nil }
        guard request.target.uuid == nil else { return refusal }
        let candidates = groups.domainEntries(for: requester).filter { $0.equalsIgnoringASCIICase(domain.name) }
        guard !candidates.isEmpty else { return refusal }
        // An entry that differs in ASCII case stands for this domain only if it can name no other one.
        let all = try await lookup.allDomains()
        return candidates.contains { FenceGroups.entry($0, names: domain, among: all) } ? nil : refusal
    }

    public func lists(_ domain: DomainInfo, among all: [DomainInfo]) -> Bool {
        groups.lists(domain, to: requester, among: all)
    }

    /// Allowed by an entry with the domain's UUID (for a request naming a UUID) or its exact name; an entry
    /// that differs in ASCII case only is left to `refusal`, which needs every domain to judge it.
    public func allowsAtOnce(_ request: FenceRequest, on domain: DomainInfo) -> Bool {
        if groups.allowsEverything { return true }
        let entries = groups.domainEntries(for: requester)
        if request.target.uuid != nil { return entries.contains { $0.equalsIgnoringASCIICase(domain.uuid) } }
        return entries.contains { $0.utf8.elementsEqual(domain.name.utf8) }
    }
}
