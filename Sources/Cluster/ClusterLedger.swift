import FenceCore

/// What every member of one partition decides alike, because it is changed only by what CPG delivers, in
/// one total order, to all of them: who is a member and in what standing, which domains each reported,
/// which hosts left (and which an operator confirmed down), which fence_xvm call backs are claimed, and so
/// where each forwarded request runs.
///
/// Standing is judged here too, from delivered hellos only: a member is accepted if its last delivered
/// hello holds the same keys as this member's own last delivered hello (not the keys loaded now), and every
/// member is judged again when this member's own hello is delivered. Two members with the same keys thus
/// judge every third member alike at every point of the order.
///
/// On every membership change that brings a member in, every member must introduce itself again (a hello
/// delivered after the change) and report its domains again before its reports count: a newcomer, which
/// never saw the earlier messages, then holds the same state as the others from the point where all have
/// introduced themselves and reported. Until then requests wait (`parked`), alike everywhere; requests
/// still waiting at the next join are refused, alike everywhere (the newcomer never saw them).
struct ClusterLedger: Sendable, Equatable {
    /// This process, while joined.
    var local: CPGMember?
    /// This host's name and role (an operator's command executes nothing and reports no domains).
    var localHostName: String
    var localRole: Hello.Role
    /// The other members and their standing.
    var members: [CPGMember: ClusterMembership.Standing] = [:]
    /// Each member's last delivered hello (this member's own included).
    var hellos: [CPGMember: Hello] = [:]
    /// The members (this one included) whose hello, or refusal, was delivered since the last join.
    var introduced: Set<CPGMember> = []
    /// Each host's domains, as reported since the last member joined (this host's own included).
    var domains: [CPGMember: [DomainReport.Domain]] = [:]
    /// Hosts whose last report said their hypervisor could not be listed.
    var unreachable: Set<CPGMember> = []
    /// Each host member's last report, kept across joins: to resolve names while reports are sent again
    /// (never to place a request).
    var lastReports: [CPGMember: [DomainReport.Domain]] = [:]
    /// Hosts that left the cluster, by name, with the domains they reported since the last join (what every
    /// member knows alike).
    var departed: [String: [DomainReport.Domain]] = [:]
    /// Hosts that left before reporting since the last join (or while refused): their domains are unknown,
    /// and anything not running on an accepted host may run there.
    var unknownDeparted: Set<String> = []
    /// Hosts whose hello was delivered since the last join: a report of hosts that left, sent before that,
    /// does not make them departed (or confirmed down) again.
    var introducedHosts: Set<String> = []
    /// Hosts that left and that an operator confirmed down.
    var confirmedDown: Set<String> = []
    /// Reports of departed hosts from members not judged yet (their hello came before this member's own, so
    /// their keys could not be checked): merged when the member is accepted, before the domains it reports
    /// next, and dropped if it is refused or leaves.
    var heldDepartedReports: [CPGMember: DepartedReport] = [:]
    /// The domains found behind fence_xvm requests' senders, by claim key (the first found, for the claim
    /// window): a fence whose receiver could not tell its requester takes it from here.
    var claimRequesters: [CallbackClaim: (uuid: String, name: String, since: ContinuousClock.Instant)] = [:]
    /// fence_xvm call backs claimed, by key: the member calling back, and since when.
    var claims: [CallbackClaim: (holder: CPGMember, since: ContinuousClock.Instant)] = [:]
    /// Fences (off, reboot) placed and not refused, by target domain UUID: under way (by the receiving
    /// member and its serial: ended by the executor's reply, the receiver's `done`, or the executor leaving),
    /// and the last one's end. Fence races are decided from it at delivery, alike on every member.
    var fences: [String: FenceRecord] = [:]

    struct FenceRecord: Sendable, Equatable {
        /// Fences under way: the request (receiver, serial) and its executor.
        var underWay: [RequestKey: CPGMember] = [:]
        /// When the last fence of the domain ended, and on which host.
        var fencedAt: ContinuousClock.Instant?
        var host: String = ""
        var startedAt: ContinuousClock.Instant = .now
    }

    struct RequestKey: Hashable, Sendable {
        let receiver: CPGMember
        let serial: UInt64
    }

    /// Requests delivered while the reports were incomplete, in delivery order.
    var parked: [(from: CPGMember, request: ForwardedRequest, at: ContinuousClock.Instant)] = []

    /// How long a claimed call back keeps further copies of the request from being claimed (fence_virtd
    /// drops copies of a request for 10 s).
    static let claimWindow: Duration = .seconds(10)
    /// The most call backs claimed at once, requests parked, and hosts remembered as departed; beyond, a
    /// claim is refused, a request fails, a confirmation is refused, alike on every member.
    static let claimLimit = 4096
    static let parkedLimit = 1024
    static let departedLimit = 256

    init(localHostName: String, localRole: Hello.Role) {
        self.localHostName = localHostName
        self.localRole = localRole
    }

    static func == (left: ClusterLedger, right: ClusterLedger) -> Bool {
        left.local == right.local && left.members == right.members && left.domains == right.domains
            && left.introduced == right.introduced && left.unreachable == right.unreachable
            && left.departed == right.departed && left.unknownDeparted == right.unknownDeparted
            && left.confirmedDown == right.confirmedDown
            && left.claims.keys == right.claims.keys && left.claimRequesters.keys == right.claimRequesters.keys
            && left.parked.map(\.request) == right.parked.map(\.request)
    }

    // MARK: - Who executes

    /// Where a request about a domain runs, as every member decides it at the request's delivery.
    enum Placement: Sendable, Equatable {
        /// On this member (a host).
        case member(CPGMember, host: String)
        /// Not yet: some member's hello or report has not arrived since the last one joined.
        case unsettled(reason: String)
        /// Nowhere, for `reason` (its host left and is not confirmed down; it may run where this member
        /// cannot see; it runs on several hosts).
        case unavailable(reason: String)
        /// Its host left and an operator confirmed it down: the domain is off.
        case confirmedDown(host: String)
        case notFound
        /// A fence whose requester is being fenced, or was fenced within the window: it lost a fence race.
        case raceLost(requester: String, host: String)
    }

    /// The members that host domains and are accepted (this one included), with their names, sorted by
    /// node id and pid: the tie-break order.
    var hosts: [(member: CPGMember, name: String)] {
        var hosts: [(CPGMember, String)] = []
        if let local, localRole == .host { hosts.append((local, localHostName)) }
        for (member, standing) in members {
            if case .accepted(let hello) = standing, hello.role == .host { hosts.append((member, hello.hostName)) }
        }
        return hosts.sorted { $0.0 < $1.0 }
    }

    /// Members that may host domains this member cannot see: refused ones that are hosts (or whose role is
    /// unknown: their hello could not be read), and hosts whose hypervisor cannot be listed.
    var blindSpots: [String] {
        var spots: [String] = []
        for member in members.keys.sorted() {
            guard case .refused = members[member], (hellos[member]?.role ?? .host) == .host else { continue }
            spots.append("member \(hellos[member]?.hostName ?? "\(member)") is refused")
        }
        for (member, name) in hosts where unreachable.contains(member) {
            spots.append("the hypervisor of host \(name) cannot be listed")
        }
        return spots
    }

    /// Why requests cannot be decided yet, or nil when every member introduced itself since the last join
    /// and every host reported.
    var unsettledReason: String? {
        if let local, !introduced.contains(local) { return "waiting for this host's own introduction" }
        for member in members.keys.sorted() {
            if !introduced.contains(member) { return "waiting for the hello of member \(member)" }
            if case .pending = members[member] { return "waiting for this host's own introduction" }
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
        // 1. Where it runs: one host (on several, as in a live migration, none: which copy to act on is a guess).
        let running = hosts.filter { has($0.member, running: true) }
        if running.count > 1 {
            return .unavailable(
                reason: "it runs on hosts \(running.map(\.name).joined(separator: " and ")) (a migration under way?)"
            )
        }
        if let running = running.first { return .member(running.member, host: running.name) }
        // 2. It may run on a host that left, or where this member cannot see: no guessing.
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
        let unknown = unknownDeparted.sorted().filter { !current.contains($0) && !confirmedDown.contains($0) }
        if let host = unknown.first {
            return .unavailable(
                reason: "host \(host) left the cluster before it reported its domains, and is not confirmed down: "
                    + "the domain may run there"
            )
        }
        if let blind = blindSpots.first {
            return .unavailable(reason: "\(blind): the domain may run there")
        }
        // 3. Where it is defined.
        if let defined = hosts.first(where: { has($0.member, running: false) }) {
            return .member(defined.member, host: defined.name)
        }
        if let host = departedHosts.first { return .confirmedDown(host: host) }
        return .notFound
    }

    /// True if placing the domain relies on an operator's confirmation that a host is down: only a quorate
    /// partition acts on that.
    func reliesOnConfirmation(_ uuid: String) -> Bool {
        confirmedDown.contains { host in
            unknownDeparted.contains(host) || departed[host]?.contains { $0.uuid == uuid } ?? false
        }
    }

    /// Records that host `name` left, with the domains it reported since the last join (nil: unknown).
    private mutating func depart(_ name: String, domains: [DomainReport.Domain]?) {
        guard departed[name] != nil || departed.count < Self.departedLimit else { return }
        departed[name] = domains ?? []
        if domains == nil { unknownDeparted.insert(name) } else { unknownDeparted.remove(name) }
    }

    // MARK: - Changes, as delivered

    /// A standing that changed, for the log.
    struct StandingChange: Sendable, Equatable {
        let member: CPGMember
        let standing: ClusterMembership.Standing
    }

    /// A membership change. Returns the requests decided by it (refused: they waited across a join).
    mutating func changeMembership(
        members current: [CPGMember],
        left: [CPGMember],
        joined: [CPGMember]
    ) -> [Decision] {
        for member in left {
            // What every member knows alike: the host's report since the last join, if it sent one.
            switch members[member] {
            case .accepted(let hello) where hello.role == .host:
                depart(hello.hostName, domains: domains[member])
            case .refused where hellos[member]?.role == .host:
                // Refused, its domains were never known here: it may run any of them.
                depart(hellos[member]!.hostName, domains: nil)
            default:
                break
            }
            members[member] = nil
            hellos[member] = nil
            heldDepartedReports[member] = nil
            introduced.remove(member)
            domains[member] = nil
            lastReports[member] = nil
            unreachable.remove(member)
            claims = claims.filter { $0.value.holder != member }
            for (uuid, record) in fences {
                for (key, executor) in record.underWay where executor == member {
                    fences[uuid]?.underWay[key] = nil
                    fences[uuid]?.fencedAt = .now
                }
            }
        }
        // Requests from a member that left have no one to answer.
        parked.removeAll { left.contains($0.from) }
        var decisions: [Decision] = []
        if !joined.isEmpty {
            // A newcomer never saw the messages so far: every member introduces itself and reports again,
            // and the requests still waiting (which the newcomer never saw) are refused, alike everywhere.
            introduced = []
            introducedHosts = []
            heldDepartedReports = [:]
            domains = [:]
            unreachable = []
            decisions = parked.map {
                Decision(
                    from: $0.from,
                    request: $0.request,
                    placement: .unavailable(reason: "the cluster's membership changed while it waited"),
                    requiresQuorum: false
                )
            }
            parked = []
        }
        for member in current where member != local && members[member] == nil {
            members[member] = .pending
        }
        return decisions
    }

    /// A member's hello, delivered. Returns the standings that changed, and the requests now decided.
    mutating func introduce(_ member: CPGMember, _ hello: Hello) -> ([StandingChange], [Decision]) {
        hellos[member] = hello
        introduced.insert(member)
        if member == local, localRole == .host {
            // Before the others are judged: a report of departed hosts held until now and merged then must
            // not make this host departed (or confirmed down) again, as it does not on the other members.
            confirmedDown.remove(localHostName)
            introducedHosts.insert(localHostName)
        }
        var changes: [StandingChange] = []
        if member == local {
            // This member's keys as delivered: every member is judged again by them.
            for other in members.keys.sorted() {
                if let change = judge(other) { changes.append(change) }
            }
        } else if let change = judge(member) {
            changes.append(change)
        }
        for other in members.keys.sorted() where introduced.contains(other) {
            guard other != local, case .accepted(let hello) = members[other], hello.role == .host else { continue }
            // A host that is back is not down (what it had stays known until it reports again).
            confirmedDown.remove(hello.hostName)
            introducedHosts.insert(hello.hostName)
        }
        // Reports of departed hosts from members accepted just now, once every host back is known as such.
        for other in heldDepartedReports.keys.sorted() {
            guard case .accepted = members[other], let held = heldDepartedReports.removeValue(forKey: other) else {
                continue
            }
            merge(held, from: other)
        }
        return (changes, drainParked())
    }

    /// A member whose introduction cannot be read (another protocol version, bytes that do not decode) is
    /// refused, with the reason; a member already introduced is not judged by a later unreadable message.
    mutating func refuse(_ member: CPGMember, reason: String) -> ([StandingChange], [Decision]) {
        guard member != local, !introduced.contains(member) else { return ([], []) }
        introduced.insert(member)
        hellos[member] = nil
        heldDepartedReports[member] = nil
        let standing = ClusterMembership.Standing.refused(reason: reason)
        let changed = members[member] != standing
        members[member] = standing
        domains[member] = nil
        return (changed ? [StandingChange(member: member, standing: standing)] : [], drainParked())
    }

    /// Judges `member` by its last hello against this member's own last delivered hello.
    private mutating func judge(_ member: CPGMember) -> StandingChange? {
        guard let hello = hellos[member] else { return nil }
        let standing: ClusterMembership.Standing
        if let own = local.flatMap({ hellos[$0] }) {
            if Set(hello.keyFingerprints) == Set(own.keyFingerprints) {
                standing = .accepted(hello)
            } else {
                standing = .refused(
                    reason: "host \(hello.hostName) holds other gateway keys "
                        + "(\(hello.keyFingerprints.joined(separator: ", ")); this host: "
                        + "\(own.keyFingerprints.joined(separator: ", ")))"
                )
            }
        } else {
            standing = .pending
        }
        guard members[member] != standing else { return nil }
        members[member] = standing
        if case .accepted = standing {
        } else {
            domains[member] = nil
            lastReports[member] = nil
            if case .refused = standing { heldDepartedReports[member] = nil }
        }
        return StandingChange(member: member, standing: standing)
    }

    /// A member's report, kept if it is this host or an accepted host that introduced itself since the
    /// last join.
    mutating func report(_ report: DomainReport, from member: CPGMember) -> [Decision] {
        guard introduced.contains(member) else { return [] }
        let host: String
        if member == local {
            guard localRole == .host else { return [] }
            host = localHostName
        } else if case .accepted(let hello) = members[member], hello.role == .host {
            host = hello.hostName
        } else {
            return []
        }
        domains[member] = report.domains
        lastReports[member] = report.domains
        departed[host] = nil  // it is back, with what it has now
        unknownDeparted.remove(host)
        if report.hypervisorReachable { unreachable.remove(member) } else { unreachable.insert(member) }
        return drainParked()
    }

    /// What this member knows of the hosts that left, for the members that joined later.
    var departedReport: DepartedReport {
        DepartedReport(
            hosts: departed.keys.sorted().map {
                DepartedReport.Host(
                    name: $0,
                    confirmedDown: confirmedDown.contains($0),
                    domains: unknownDeparted.contains($0) ? nil : departed[$0] ?? []
                )
            }
        )
    }

    /// Another host's knowledge of the hosts that left, merged in: hosts that introduced themselves since
    /// the last join are not departed (the report may predate their return); "unknown" wins over a list.
    mutating func merge(_ report: DepartedReport, from member: CPGMember) {
        guard member != local else { return }
        if case .pending = members[member], introduced.contains(member) {
            // Its hello came before this member's own: judged (and this merged) once that one is delivered.
            heldDepartedReports[member] = report
            return
        }
        guard case .accepted(let hello) = members[member], hello.role == .host else { return }
        let current = Set(hosts.map(\.name)).union(introducedHosts)
        for host in report.hosts where !current.contains(host.name) {
            guard departed[host.name] != nil || departed.count < Self.departedLimit else { continue }
            if departed[host.name] == nil { departed[host.name] = host.domains ?? [] }
            if host.domains == nil { unknownDeparted.insert(host.name) }
            if host.confirmedDown { confirmedDown.insert(host.name) }
        }
    }

    /// An operator's confirmation that a host which left is down; false if that host is a member now (or
    /// too many hosts are remembered as departed).
    mutating func confirmDown(_ host: String) -> Bool {
        guard !hosts.contains(where: { $0.name == host }) else { return false }
        guard departed[host] != nil || departed.count < Self.departedLimit else { return false }
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
        /// How long it waited, parked, before it was decided (its executor has that much less time).
        var waited: Duration = .zero
        /// The placement relies on an operator's confirmation that a host is down: the executor acts only
        /// if its partition is quorate.
        let requiresQuorum: Bool
    }

    private mutating func decide(_ request: ForwardedRequest, from member: CPGMember) -> Decision {
        var placement = placement(ofDomain: request.domainUUID)
        var request = request
        if request.requesterUUID.isEmpty, !request.claimKey.isEmpty,
            let found = claimRequesters[CallbackClaim(key: request.claimKey)]
        {
            request = request.withRequester(uuid: found.uuid, name: found.name)
        }
        if case .member(let executor, let host) = placement, ["off", "reboot"].contains(request.action),
            request.raceWindowMilliseconds > 0
        {
            // Fence races: the first fence wins; a fence from a domain being fenced, or fenced within the
            // window, is refused.
            let window = Duration.milliseconds(Int64(request.raceWindowMilliseconds))
            if !request.requesterUUID.isEmpty, let record = fences[request.requesterUUID],
                isFencing(record, within: window)
            {
                placement = .raceLost(requester: request.requesterName, host: record.host)
            } else {
                var record = fences[request.domainUUID] ?? FenceRecord()
                if record.underWay.isEmpty { record.startedAt = .now }
                record.underWay[RequestKey(receiver: member, serial: request.serial)] = executor
                record.host = host
                fences[request.domainUUID] = record
                pruneFences(window: window)
            }
        }
        return Decision(
            from: member,
            request: request,
            placement: placement,
            requiresQuorum: reliesOnConfirmation(request.domainUUID)
        )
    }

    /// The longest a fence counts as under way without an end heard: then it counts as done (fenced).
    static let fenceUnderWayLimit: Duration = .seconds(180)

    private func isFencing(_ record: FenceRecord, within window: Duration) -> Bool {
        let now = ContinuousClock.now
        if !record.underWay.isEmpty { return now - record.startedAt < Self.fenceUnderWayLimit + window }
        return record.fencedAt.map { now - $0 < window } ?? false
    }

    /// Forgets fences that no longer matter (the map stays as small as the domains fenced lately).
    private mutating func pruneFences(window: Duration) {
        guard fences.count > 64 else { return }
        fences = fences.filter { isFencing($0.value, within: max(window, .seconds(600))) }
    }

    /// A fence ended: `fenced` if it succeeded or its outcome is unknown (a node that may be dead counts as
    /// dead).
    mutating func finishFence(_ key: RequestKey, fenced: Bool) {
        for uuid in fences.keys where fences[uuid]?.underWay[key] != nil {
            fences[uuid]?.underWay[key] = nil
            if fenced { fences[uuid]?.fencedAt = .now }
        }
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
                        placement: .unavailable(
                            reason: "too many requests wait for the cluster's membership to settle"
                        ),
                        requiresQuorum: false
                    )
                ]
            }
            parked.append((member, request, .now))
            return []
        }
        return [decide(request, from: member)]
    }

    /// The receiving member gave a request up at its deadline: if it still waits, it is dropped (true),
    /// alike everywhere; if it was decided, it runs.
    mutating func withdraw(serial: UInt64, from member: CPGMember) -> Bool {
        guard let index = parked.firstIndex(where: { $0.from == member && $0.request.serial == serial }) else {
            return false
        }
        parked.remove(at: index)
        return true
    }

    private mutating func drainParked() -> [Decision] {
        guard !parked.isEmpty, unsettledReason == nil else { return [] }
        let waiting = parked
        parked = []
        let now = ContinuousClock.now
        var decisions: [Decision] = []
        for entry in waiting where isTrusted(entry.from) {
            var decision = decide(entry.request, from: entry.from)
            decision.waited = now - entry.at
            decisions.append(decision)
        }
        return decisions
    }

    /// A claim delivered now: true if `member` holds the call back (the first claim within the window).
    mutating func claim(_ claim: CallbackClaim, by member: CPGMember, at now: ContinuousClock.Instant) -> Bool {
        guard isTrusted(member) else { return false }
        claims = claims.filter { now - $0.value.since < Self.claimWindow }
        guard claims[claim] == nil, claims.count < Self.claimLimit else { return false }
        claims[claim] = (member, now)
        return true
    }

    /// The domain a trusted member found behind a claimed request's sender (the first one counts).
    mutating func noteRequester(_ found: ClaimRequester, from member: CPGMember, at now: ContinuousClock.Instant) {
        guard isTrusted(member), !found.requesterUUID.isEmpty else { return }
        claimRequesters = claimRequesters.filter { now - $0.value.since < Self.claimWindow }
        guard claimRequesters[found.claim] == nil, claimRequesters.count < Self.claimLimit else { return }
        claimRequesters[found.claim] = (found.requesterUUID, found.requesterName, now)
    }

    /// A claim given up by its holder.
    mutating func release(_ claim: CallbackClaim, by member: CPGMember) {
        if claims[claim]?.holder == member { claims[claim] = nil }
    }
}
