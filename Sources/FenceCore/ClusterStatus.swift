/// The cluster as this host sees it (cluster mode): its members, their standing and their domains. Front
/// ends read it through `FenceService.clusterStatus(visibleTo:)`.
public struct ClusterStatus: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var nodeID: UInt32
        public var pid: UInt32
        /// This host's own process.
        public var isLocal: Bool
        /// The member's host name, once its hello arrived.
        public var hostName: String?
        /// `local`, `pending` (no hello yet), `accepted` or `refused`.
        public var standing: String
        /// Why it was refused.
        public var reason: String?
        /// `host` (fences domains) or `operator` (a `fencegate cluster` command), once its hello arrived.
        public var role: String?
        /// Its domains, as it last reported them (accepted members and this host only).
        public var domains: [DomainInfo]

        public init(
            nodeID: UInt32,
            pid: UInt32,
            isLocal: Bool,
            hostName: String?,
            standing: String,
            reason: String?,
            role: String?,
            domains: [DomainInfo]
        ) {
            self.role = role
            self.nodeID = nodeID
            self.pid = pid
            self.isLocal = isLocal
            self.hostName = hostName
            self.standing = standing
            self.reason = reason
            self.domains = domains
        }
    }

    /// The CPG group's name.
    public var name: String
    /// Whether this host's partition is quorate (corosync's votequorum); nil while unknown.
    public var quorate: Bool?
    /// Every member, this host first, then by node id and pid; empty while not joined.
    public var members: [Member]
    /// Hosts that left the cluster while this host was in it: their domains are not fenced (nor reported
    /// off) unless an operator confirmed them down and this partition is quorate.
    public var departed: [DepartedHost]

    public struct DepartedHost: Sendable, Equatable {
        public var hostName: String
        public var confirmedDown: Bool
        /// Its domains as it last reported them.
        public var domains: [DomainInfo]

        public init(hostName: String, confirmedDown: Bool, domains: [DomainInfo]) {
            self.hostName = hostName
            self.confirmedDown = confirmedDown
            self.domains = domains
        }
    }

    public init(name: String, quorate: Bool?, members: [Member], departed: [DepartedHost] = []) {
        self.name = name
        self.quorate = quorate
        self.members = members
        self.departed = departed
    }
}

/// Where the fence service reads the cluster's status from (the cluster membership, in cluster mode).
public protocol ClusterDirectory: Sendable {
    var status: ClusterStatus { get }
    /// Whether this host's partition is quorate; nil while unknown. Cheap: for health checks.
    var quorate: Bool? { get }
}
