public import Store

/// Cluster mode: how a request about a domain reaches the host that executes it. The cluster membership
/// implements it; the fence service asks it for every request that a front end of this host received.
public protocol ClusterRouter: ClusterDirectory {
    /// Resolves `target` among the domains the members reported (this host's included, and those of hosts
    /// that left, with their host's name).
    func locate(_ target: DomainTarget) -> ClusterLocation

    /// Every domain the members report, once each (by UUID; where it runs if anywhere), for lists and for
    /// access policies that judge a domain among all.
    func clusterDomains() -> [ClusterDomain]

    /// Sends `request` to the cluster, which decides at delivery, alike on every host, where it runs; if
    /// elsewhere, waits for that host's answer until `deadline` (plus the time the answer takes to return).
    func route(_ request: RoutedRequest, deadline: ContinuousClock.Instant) async -> RouteOutcome

    /// A fence (off, reboot) placed here (`RouteOutcome.here`) ended: `fenced` if it succeeded or its outcome
    /// is unknown (the cluster's fence races are decided from it).
    func finished(ticket: UInt64, fenced: Bool) async

    /// fence_xvm: claims the call back of a guest's request among the hosts that heard it, telling the others
    /// the domain this host found behind its sender, if any. True: this host calls back; false: another host
    /// does (or the cluster could not decide in time).
    func claimCallback(_ key: [UInt8], requester: DomainInfo?, deadline: ContinuousClock.Instant) async -> Bool

    /// Gives a claim up (the call back failed): another host may answer a copy of the request.
    func releaseCallback(_ key: [UInt8]) async

    /// One page of the hosts' audit logs merged, newest first, after `cursor`: every host of the cluster
    /// answers `query` (already scoped to what the asker may see) from its own log.
    func auditPage(
        _ query: AuditQuery,
        after cursor: ClusterAuditCursor?,
        deadline: ContinuousClock.Instant
    ) async
        -> ClusterAuditPage
}

/// A domain of the cluster and the host it is on.
public struct ClusterDomain: Sendable, Equatable {
    public var domain: DomainInfo
    /// The host where it runs, or else where it is defined (its first member, by node id).
    public var host: String
    /// True if its host left the cluster (the domain is as that host last reported it).
    public var hostLeft: Bool

    public init(domain: DomainInfo, host: String, hostLeft: Bool) {
        self.domain = domain
        self.host = host
        self.hostLeft = hostLeft
    }
}

/// Where a target is in the cluster, as the members reported it.
public enum ClusterLocation: Sendable, Equatable {
    case found(ClusterDomain)
    case notFound
    /// Several domains of that name, with different UUIDs, on `hosts`: only a UUID names one of them.
    case ambiguous(hosts: [String])
    /// Not joined (corosync unreachable), or joined without reports yet.
    case unavailable(reason: String)
}

/// A request for the cluster: resolved and authorized by the host that received it.
public struct RoutedRequest: Sendable {
    public var action: FenceAction
    public var domain: DomainInfo
    /// How the requester named the domain.
    public var target: String
    public var origin: RequestOrigin
    public var waitForDomain: Bool
    /// The domain that sent it, if known (fence races), and the race window (zero: arbitration off).
    public var requester: DomainInfo?
    public var raceWindow: Duration

    public init(
        action: FenceAction,
        domain: DomainInfo,
        target: String,
        origin: RequestOrigin,
        waitForDomain: Bool,
        requester: DomainInfo? = nil,
        raceWindow: Duration = .zero
    ) {
        self.action = action
        self.domain = domain
        self.target = target
        self.origin = origin
        self.waitForDomain = waitForDomain
        self.requester = requester
        self.raceWindow = raceWindow
    }
}

/// Where the cluster decided a request runs, and what came of it.
public enum RouteOutcome: Sendable, Equatable {
    /// On this host: the fence service executes it now, then tells the router how it ended
    /// (`finished(_:fenced:)`, with `ticket`).
    case here(ticket: UInt64)
    /// Executed on `host`, whose audit row is `operationID` there.
    case executed(host: String, operationID: Int64, state: DomainState, note: String?)
    /// Refused: its requester (`requester`, a domain) is being fenced, or was fenced moments ago, by a
    /// request executed on `host`: a fence race it lost. Nothing was done.
    case raceLost(requester: String, host: String)
    /// The domain's host left the cluster and an operator confirmed it down, and this partition is quorate:
    /// the domain is off (nothing was executed).
    case hostDown(host: String)
    /// Not executed, or not known to be (`FenceError.clusterUnavailable`, `.timedOut`); `host` is the
    /// executor when one was decided.
    case failed(host: String?, FenceError)
}
