import FenceCore

/// What every member of one partition decides alike, because it is changed only by what CPG delivers, in
/// one total order, to all of them: who is a member and in what standing, which domains each reported,
/// which hosts left (and which an operator confirmed down), which fence_xvm call backs are claimed, and so
/// where each forwarded request runs.
///
/// On every membership change that brings a member in, all reports are forgotten, on every member at the
/// same point of the order, and every member reports again: a newcomer, which never saw the earlier
/// reports, then holds the same reports as the others. Until every member has reported, requests wait
/// (`parked`), on every member alike, and are decided in order once the reports are complete.
struct ClusterLedger: Sendable, Equatable {
    /// This process, while joined.
    var local: CPGMember?
    /// This host's name and role (an operator's command executes nothing and reports no domains).
    var localHostName: String
    var localRole: Hello.Role
    /// The other members and their standing.
    var members: [CPGMember: ClusterMembership.Standing] = [:]
    /// Each host's domains, as reported since the last member joined (this host's own included).
    var domains: [CPGMember: [DomainReport.Domain]] = [:]
    /// Hosts whose last report said their hypervisor could not be listed.
    var unreachable: Set<CPGMember> = []
    /// Each host member's last report, kept across joins: what it had when it left.
    var lastReports: [CPGMember: [DomainReport.Domain]] = [:]
    /// Hosts that left the cluster, by name, with the domains they last reported.
    var departed: [String: [DomainReport.Domain]] = [:]
    /// Hosts that left and that an operator confirmed down.
    var confirmedDown: Set<String> = []
    /// fence_xvm call backs claimed, by key: the member calling back, and since when.
    var claims: [CallbackClaim: (holder: CPGMember, since: ContinuousClock.Instant)] = [:]
    /// Requests delivered while the reports were incomplete, in delivery order.
    var parked: [(from: CPGMember, request: ForwardedRequest)] = []

    /// How long a claimed call back keeps further copies of the request from being claimed (fence_virtd
    /// drops copies of a request for 10 s).
    static let claimWindow: Duration = .seconds(10)
    /// The most call backs claimed at once, and the most requests parked; beyond, a claim is refused and a
    /// request fails, alike on every member.
    static let claimLimit = 4096
    static let parkedLimit = 1024

    init(localHostName: String, localRole: Hello.Role) {
        self.localHostName = localHostName
        self.localRole = localRole
    }

    static func == (left: ClusterLedger, right: ClusterLedger) -> Bool {
        left.local == right.local && left.members == right.members && left.domains == right.domains
            && left.unreachable == right.unreachable && left.departed == right.departed
            && left.confirmedDown == right.confirmedDown && left.claims.keys == right.claims.keys
            && left.parked.map(\.request) == right.parked.map(\.request)
    }

    // MARK: - Who executes

    /// Where a request about a domain runs, as every member decides it at the request's delivery.
    enum Placement: Sendable, Equatable {
        /// On this member (a host).
        case member(CPGMember, host: String)
        /// Not yet: some member's hello or report has not arrived since the last one joined.
        case unsettled(reason: String)
        /// Nowhere, for `reason` (its host left and is not confirmed down; a hypervisor cannot be listed).
        case unavailable(reason: String)
        /// Its host left and an operator confirmed it down: the domain is off.
        case confirmedDown(host: String)
        case notFound
    }

    /// The members that host domains, with their names, sorted by node id and pid: the tie-break order.
    var hosts: [(member: CPGMember, name: String)] {
        var hosts: [(CPGMember, String)] = []
        if let local, localRole == .host { hosts.append((local, localHostName)) }
        for (member, standing) in members {
            if case .accepted(let hello) = standing, hello.role == .host { hosts.append((member, hello.hostName)) }
        }
        return hosts.sorted { $0.0 < $1.0 }
    }

    /// Why requests cannot be decided yet, or nil when every member's hello and every host's report arrived.
    var unsettledReason: String? {
        for member in members.keys.sorted() {
            if case .pending = members[member] { return "waiting for the hello of member \(member)" }
        }
        for (member, name) in hosts where domains[member] == nil {
            return "waiting for the domains of host \(name)"
        }
        return nil
    }

    func placement(ofDomain uuid: String) -> Placement {
        if let reason = unsettledReason { return .unsettled(reason: reason) }
        let hosts = self.hosts
        func has(_ member: CPGMember, running: Bool) -> Bool {
            (domains[member] ?? []).contains {
                $0.uuid == uuid && (!running || DomainState(rawValue: $0.state)?.power == .on)
            }
        }
        // 1. Where it runs.
        if let running = hosts.first(where: { has($0.member, running: true) }) {
            return .member(running.member, host: running.name)
        }
        // 2. It may run on a host that left, or on one whose hypervisor cannot be listed: no guessing.
        let current = Set(hosts.map(\.name))
        let departedHosts = departed.keys.sorted().filter { name in
            !current.contains(name) && departed[name]!.contains { $0.uuid == uuid }
        }
        if let host = departedHosts.first(where: { !confirmedDown.contains($0) }) {
            return .unavailable(
                reason: "its host \(host) left the cluster and is not confirmed down "
                    + "(`fencegate cluster confirm-down \(host)` once it is)"
            )
        }
        if let blind = hosts.first(where: { unreachable.contains($0.member) }) {
            return .unavailable(
                reason: "the hypervisor of host \(blind.name) cannot be listed: the domain may run there"
            )
        }
        // 3. Where it is defined.
        if let defined = hosts.first(where: { has($0.member, running: false) }) {
            return .member(defined.member, host: defined.name)
        }
        if let host = departedHosts.first { return .confirmedDown(host: host) }
        return .notFound
    }

    // MARK: - Changes, as delivered

    /// A membership change. Returns the parked requests that are now decided.
    mutating func changeMembership(
        members current: [CPGMember],
        left: [CPGMember],
        joined: [CPGMember]
    ) -> [Decision] {
        for member in left {
            if case .accepted(let hello) = members[member], hello.role == .host {
                departed[hello.hostName] = lastReports[member] ?? []
            }
            members[member] = nil
            domains[member] = nil
            lastReports[member] = nil
            unreachable.remove(member)
            claims = claims.filter { $0.value.holder != member }
        }
        // Requests from a member that left have no one to answer.
        parked.removeAll { left.contains($0.from) }
        if !joined.isEmpty {
            // A newcomer never saw the reports so far: all are forgotten and sent again, alike everywhere.
            domains = [:]
            unreachable = []
        }
        for member in current where member != local && members[member] == nil {
            members[member] = .pending
        }
        return drainParked()
    }

    /// A member's hello, judged (this host's own hello is always accepted: it holds its own keys).
    mutating func introduce(_ member: CPGMember, as standing: ClusterMembership.Standing) -> [Decision] {
        if member != local {
            members[member] = standing
            if case .accepted = standing {
            } else {
                domains[member] = nil
                lastReports[member] = nil
            }
        }
        if case .accepted(let hello) = standing, hello.role == .host {
            // A host that left and came back is a host like any other again.
            departed[hello.hostName] = nil
            confirmedDown.remove(hello.hostName)
        }
        return drainParked()
    }

    /// A member's report, kept if it is this host or an accepted host.
    mutating func report(_ report: DomainReport, from member: CPGMember) -> [Decision] {
        let isHost: Bool
        if member == local {
            isHost = localRole == .host
        } else if case .accepted(let hello) = members[member] {
            isHost = hello.role == .host
        } else {
            isHost = false
        }
        guard isHost else { return [] }
        domains[member] = report.domains
        lastReports[member] = report.domains
        if report.hypervisorReachable { unreachable.remove(member) } else { unreachable.insert(member) }
        return drainParked()
    }

    /// What this member knows of the hosts that left, for the members that joined later.
    var departedReport: DepartedReport {
        DepartedReport(
            hosts: departed.keys.sorted().map {
                DepartedReport.Host(name: $0, confirmedDown: confirmedDown.contains($0), domains: departed[$0] ?? [])
            }
        )
    }

    /// Another host's knowledge of the hosts that left, merged in (hosts that are members now excepted).
    mutating func merge(_ report: DepartedReport, from member: CPGMember) {
        guard member != local, case .accepted(let hello) = members[member], hello.role == .host else { return }
        let current = Set(hosts.map(\.name))
        for host in report.hosts where !current.contains(host.name) {
            if departed[host.name] == nil { departed[host.name] = host.domains }
            if host.confirmedDown { confirmedDown.insert(host.name) }
        }
    }

    /// An operator's confirmation that a host which left is down; false if that host is a member now.
    mutating func confirmDown(_ host: String) -> Bool {
        guard !hosts.contains(where: { $0.name == host }) else { return false }
        confirmedDown.insert(host)
        if departed[host] == nil { departed[host] = [] }
        return true
    }

    /// Whether `member` may send requests, claims and confirmations: this host or an accepted member.
    func isTrusted(_ member: CPGMember) -> Bool {
        if member == local { return true }
        if case .accepted = members[member] { return true }
        return false
    }

    // MARK: - Requests and claims

    /// A request decided at delivery (or later, once the reports were complete).
    struct Decision: Sendable, Equatable {
        let from: CPGMember
        let request: ForwardedRequest
        let placement: Placement
    }

    /// A request delivered now: decided, or parked until the reports are complete.
    mutating func deliver(_ request: ForwardedRequest, from member: CPGMember) -> [Decision] {
        // A member not judged yet (a newcomer has judged no one) leaves the ledger unsettled: its request
        // waits, as on the members that judged it already, and is decided with theirs once it is accepted.
        if case .refused = members[member] { return [] }
        guard member == local || members[member] != nil else { return [] }
        if unsettledReason != nil {
            guard parked.count < Self.parkedLimit else {
                return [
                    Decision(
                        from: member,
                        request: request,
                        placement: .unavailable(reason: "too many requests wait for the cluster's membership to settle")
                    )
                ]
            }
            parked.append((member, request))
            return []
        }
        return [Decision(from: member, request: request, placement: placement(ofDomain: request.domainUUID))]
    }

    private mutating func drainParked() -> [Decision] {
        guard !parked.isEmpty, unsettledReason == nil else { return [] }
        let waiting = parked
        parked = []
        return waiting.filter { isTrusted($0.from) }.map {
            Decision(from: $0.from, request: $0.request, placement: placement(ofDomain: $0.request.domainUUID))
        }
    }

    /// A claim delivered now: true if `member` holds the call back (the first claim within the window).
    mutating func claim(_ claim: CallbackClaim, by member: CPGMember, at now: ContinuousClock.Instant) -> Bool {
        guard isTrusted(member) else { return false }
        claims = claims.filter { now - $0.value.since < Self.claimWindow }
        guard claims[claim] == nil, claims.count < Self.claimLimit else { return false }
        claims[claim] = (member, now)
        return true
    }

    /// A claim given up by its holder.
    mutating func release(_ claim: CallbackClaim, by member: CPGMember) {
        if claims[claim]?.holder == member { claims[claim] = nil }
    }
}
