public import FenceCore
import Foundation

/// Which requester may fence which domain: fence_virtd's `groups` section, with its matching rules
/// (protocol doc §8).
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

    /// Whether `requester` may run on/off/reboot/status on `domain`, the domain string exactly as the request
    /// named it (a group listing only a UUID denies the name, and the reverse, as upstream does). Case-insensitive.
    public func permits(requester: String, domain: String) -> Bool {
        allowsEverything || groups.contains { group in
            group.contains(requester: requester) && group.domains.contains { $0.caseInsensitiveCompare(domain) == .orderedSame }
        }
    }

    /// Whether `domain` is in a list answered to `requester`: its UUID or its name is in a group that contains
    /// the requester.
    public func lists(_ domain: DomainInfo, to requester: String) -> Bool {
        allowsEverything || groups.contains { group in
            group.contains(requester: requester) && group.domains.contains {
                $0.caseInsensitiveCompare(domain.uuid) == .orderedSame
                    || $0.caseInsensitiveCompare(domain.name) == .orderedSame
            }
        }
    }
}

extension FenceGroups.Group {
    /// A requester that is a UUID (the serial listener's identity) is looked for among the domain entries,
    /// any other among the requester entries.
    func contains(requester: String) -> Bool {
        let entries = UUID(uuidString: requester) != nil ? domains : requesters
        return entries.contains { $0.caseInsensitiveCompare(requester) == .orderedSame }
    }
}
