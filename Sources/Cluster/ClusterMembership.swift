public import FenceCore
import FoundationEssentials
import Locking
public import Logging
public import ServiceLifecycle
import Synchronization

/// Membership of the Fencegate cluster: joins the CPG group through the local corosync, introduces itself
/// (`Hello`: protocol version, key fingerprints), and accepts a member only if it speaks this protocol
/// version and holds the same keys; a refused member is logged on both sides, with the reason. Rejoins by
/// itself when corosync goes away and comes back. A lifecycle service.
public final class ClusterMembership: Service, ClusterDirectory, Sendable {
    /// Whether this host's partition is quorate; nil while unknown (for health checks: no domain lists).
    public var quorate: Bool? { current.withLock { $0.quorate } }

    public struct Configuration: Sendable {
        /// The CPG group's name (1 to 128 bytes).
        public var name: String
        /// This host's introduction.
        public var hello: Hello
        /// Between attempts to join while corosync is unreachable.
        public var rejoinDelay: Duration = .seconds(1)

        public init(name: String, hello: Hello) {
            self.name = name
            self.hello = hello
        }
    }

    /// What this host thinks of another member.
    public enum Standing: Sendable, Equatable {
        /// Joined; its hello has not arrived yet.
        case pending
        case accepted(Hello)
        case refused(reason: String)
    }

    /// The group as this host sees it.
    public struct View: Sendable, Equatable {
        /// What every member decides alike (membership, reports, claims, where requests run).
        var ledger: ClusterLedger
        /// Whether this host's partition is quorate (votequorum); nil while unknown.
        public var quorate: Bool?

        init(local: CPGMember? = nil, hostName: String, role: Hello.Role) {
            ledger = ClusterLedger(localHostName: hostName, localRole: role)
            ledger.local = local
        }

        /// This process, while joined.
        public var local: CPGMember? { ledger.local }
        /// The other members and their standing.
        public var members: [CPGMember: Standing] { ledger.members }
        /// Each host's domains, as reported since the last member joined (this host's own too, while joined).
        public var domains: [CPGMember: [DomainReport.Domain]] { ledger.domains }
        /// Hosts that left the cluster (by name) and that an operator confirmed down.
        public var departed: [String] { ledger.departed.keys.sorted() }
        public var confirmedDown: Set<String> { ledger.confirmedDown }

        /// The accepted members, sorted.
        public var accepted: [CPGMember] {
            members.filter { if case .accepted = $0.value { true } else { false } }.keys.sorted()
        }
    }

    public let configuration: Configuration
    let logger: Logger
    let current: Locked<View>
    /// The group while joined: requests and claims are sent through it.
    let joined = Locked<CPGGroup?>(nil)
    /// This host's requests and claims waiting for the cluster's decision or the executor's answer.
    let forwarding = Forwarding()
    /// This member's merged audit queries waiting for the hosts' pages.
    let audits = AuditCollection()
    /// Merged audit queries this host is answering now.
    let answering = Atomic<Int>(0)
    /// Work a delivery calls for that must not hold up the event loop (sending, reading the audit log):
    /// started by the event loop as child tasks of the membership.
    let followUps = Locked<[@Sendable () async -> Void]>([])
    /// Where forwarded requests are executed (nil: this member executes nothing).
    let service: FenceService?

    /// Changes the view, and the gauges with it (under the same lock, so the gauges show the latest view);
    /// returns what `change` returns.
    func changeView<T>(_ change: (inout View) -> T) -> T {
        current.withLock { view in
            let result = change(&view)
            metrics?.record(view)
            return result
        }
    }
    /// This host's introduction as it is now (keys can change on reload).
    let hello: Locked<Hello>
    /// While joined: asks the hello sender to introduce this host again (the newest request is enough).
    private let introductions = Locked<AsyncStream<Void>.Continuation?>(nil)

    /// This host's domains, as the fence service lists them, and its signals when they change.
    private let localDomains: (@Sendable () async throws -> [DomainInfo])?
    private let domainChanges: (@Sendable () -> AsyncStream<Void>)?
    let metrics: ClusterMetrics?
    /// The least time between two announcements: a storm of lifecycle events, or members whose standing
    /// keeps changing, cost at most five listings and reports a second (and a change is still known on the
    /// other hosts well within a second).
    static let announcementSpacing: Duration = .milliseconds(200)

    /// - Parameter service: the fence service whose hypervisor's domains this host reports to the others
    ///   (when they change, by the hypervisor's events); nil reports none.
    public init(configuration: Configuration, service: FenceService? = nil, logger: Logger) {
        self.configuration = configuration
        self.service = service
        current = Locked(View(hostName: configuration.hello.hostName, role: configuration.hello.role))
        if let service {
            // Bounded: a hung hypervisor makes this host's report "unknown", not late.
            localDomains = { try await service.domains(deadline: .now + Self.listingLimit) }
            domainChanges = { service.domainChanges() }
            metrics = ClusterMetrics(metrics: service.metrics)
        } else {
            localDomains = nil
            domainChanges = nil
            metrics = nil
        }
        hello = Locked(configuration.hello)
        var logger = logger
        logger[metadataKey: "cluster.name"] = "\(configuration.name)"
        self.logger = logger
    }

    /// The group now.
    public var view: View { current.withLock { $0 } }

    /// Takes this host's new introduction (its gateway keys were reloaded) and sends it to the members; they
    /// judge it again.
    public func update(_ newHello: Hello) {
        let changed = hello.withLock { current in
            defer { current = newHello }
            return current != newHello
        }
        if changed { introductions.withLock { $0 }?.yield() }
    }

    /// Joins, and rejoins after corosync goes away, until graceful shutdown or cancellation.
    public func run() async {
        await withDiscardingTaskGroup { tasks in
            if let changes = domainChanges?() {
                // Each change of this host's domains is announced (coalesced while a send is under way).
                tasks.addTask {
                    for await _ in changes { self.introductions.withLock { $0 }?.yield() }
                }
            }
            await membershipLoop()
            tasks.cancelAll()
        }
    }

    private func membershipLoop() async {
        var lastFailure: String?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let name = configuration.name
                let group = try await cancelWhenGracefulShutdown { try await CPGGroup.join(name: name) }
                lastFailure = nil
                let introduction = self.hello.withLock { $0 }
                changeView {
                    $0 = View(local: group.local, hostName: introduction.hostName, role: introduction.role)
                }
                joined.withLock { $0 = group }
                logger.notice("joined the cluster", metadata: ["cluster.member": "\(group.local)"])
                await withGracefulShutdownHandler {
                    await serve(group)
                } onGracefulShutdown: {
                    group.leave()
                }
                joined.withLock { $0 = nil }
                forwarding.failAll(reason: "this host left the cluster (corosync went away)")
                changeView { $0 = View(hostName: introduction.hostName, role: introduction.role) }
                if !Task.isShuttingDownGracefully && !Task.isCancelled {
                    logger.error("left the cluster: corosync went away; rejoining")
                }
            } catch is CancellationError {
                break
            } catch {
                // Logged once per cause, not once a second.
                if lastFailure != "\(error)" {
                    logger.error("cannot join the cluster; retrying", metadata: ["error": "\(error)"])
                    lastFailure = "\(error)"
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.configuration.rejoinDelay) }
        }
    }

    private func serve(_ group: CPGGroup) async {
        let (requests, introduce) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        introductions.withLock { $0 = introduce }
        let left = Flag()
        let quorum: QuorumWatch?
        do {
            quorum = try await cancelWhenGracefulShutdown { try await QuorumWatch.start() }
        } catch is CancellationError {
            quorum = nil
        } catch {
            logger.warning(
                "cannot track the cluster's quorum (is votequorum the quorum provider?); reported as unknown",
                metadata: ["error": "\(error)"]
            )
            quorum = nil
        }
        defer { quorum?.stop() }
        await withDiscardingTaskGroup { tasks in
            if let quorum {
                tasks.addTask { await self.track(quorum) }
            }
            // Announcements go out beside the event loop: a send waiting on corosync's flow control, or a
            // listing waiting on the hypervisor, delays no event.
            tasks.addTask { await self.announce(requests, again: introduce, through: group, left: left) }
            tasks.addTask { await self.watchSilence(through: group, left: left) }
            introduce.yield()
            var warned: Set<CPGMember> = []
            for await event in group.events {
                switch event {
                case .membership(let members, let left, let joined):
                    let decisions = changeMembership(members: members, left: left, joined: joined)
                    act(on: decisions, group: group, tasks: &tasks)
                    // Every report was forgotten: every member reports again (and newcomers learn of the
                    // members already there by their hellos).
                    if !joined.isEmpty { introduce.yield() }
                case .message(let from, let bytes):
                    // A member whose standing changed (it joined, or its keys changed) may not know this
                    // host's standing either: introduce this host again. Standings settle, so this ends.
                    let (changed, decisions) = receive(bytes, from: from, warned: &warned)
                    act(on: decisions, group: group, tasks: &tasks)
                    if changed { introduce.yield() }
                    for work in followUps.withLock({ work in
                        defer { work = [] }
                        return work
                    }) {
                        tasks.addTask { await work() }
                    }
                }
            }
            left.set()
            introductions.withLock { $0 = nil }
            introduce.finish()
            group.leave()
            quorum?.stop()  // ends its tracking task
            tasks.cancelAll()  // an announcement under way is not waited for
        }
    }

    /// Keeps the view's quorum state, and logs each change.
    private func track(_ quorum: QuorumWatch) async {
        defer { changeView { $0.quorate = nil } }  // unknown once votequorum is no longer heard
        for await quorate in quorum.changes {
            let previous = changeView { view in
                defer { view.quorate = quorate }
                return view.quorate
            }
            guard previous != quorate else { continue }
            if quorate {
                logger.notice("this host's partition is quorate")
            } else {
                logger.warning("this host's partition is not quorate")
            }
        }
    }

    /// Sends this host's hello and what it knows of the hosts that left, then its domains, each time an
    /// announcement is asked for, until the group is left. The hello goes first: a slow hypervisor delays only
    /// the domains. A send that fails is tried again (a member that never introduces itself holds the others'
    /// requests until it is declared silent).
    private func announce(
        _ requests: AsyncStream<Void>,
        again: AsyncStream<Void>.Continuation,
        through group: CPGGroup,
        left: Flag
    ) async {
        var last: ContinuousClock.Instant?
        var lastListed: [DomainReport.Domain] = []
        for await _ in requests {
            if let last { try? await Task.sleep(until: last + Self.announcementSpacing) }
            guard !left.isSet, !Task.isCancelled else { return }
            last = .now
            // What this host knows of the hosts that left goes before its domains, read just before it is
            // sent: once every host's domains arrived, every member knows them too.
            var sent = await send(.hello(hello.withLock { $0 }), through: group, left: left)
            let departed = current.withLock { $0.ledger.departedReport }
            if !departed.hosts.isEmpty { sent = await send(.departed(departed), through: group, left: left) && sent }
            if let localDomains {
                let report: DomainReport
                do {
                    report = DomainReport(domains: try await localDomains().map(DomainReport.Domain.init))
                    lastListed = report.domains
                } catch {
                    logger.warning(
                        "could not list this host's domains for the cluster; reported as unknown",
                        metadata: ["error": "\(error)"]
                    )
                    // The others must not take "could not list" for "has none": a domain may run here.
                    report = DomainReport(domains: lastListed, hypervisorReachable: false)
                }
                sent = await send(.domains(report), through: group, left: left) && sent
            }
            if !sent, !left.isSet { again.yield() }
        }
    }

    /// Sends `message`; false if it could not be sent (logged).
    private func send(_ message: ClusterMessage, through group: CPGGroup, left: Flag) async -> Bool {
        do {
            try await group.send(message.encoded, deadline: .now + .seconds(5))
            return true
        } catch {
            if !left.isSet { logger.error("could not send to the cluster", metadata: ["error": "\(error)"]) }
            return false
        }
    }

    /// The longest this host waits for its hypervisor's list of domains before it reports them as unknown.
    static let listingLimit: Duration = .seconds(5)

    /// How long a member may stay silent (no hello) after it joined, or after any member joined, before
    /// this host declares it silent to the group: then every member refuses it alike, and requests held for
    /// it are decided.
    static let silenceLimit: Duration = .seconds(5)

    /// Watches for members that do not introduce themselves, and declares each one silent once.
    private func watchSilence(through group: CPGGroup, left: Flag) async {
        var unintroducedSince: [CPGMember: ContinuousClock.Instant] = [:]
        var declared: Set<CPGMember> = []
        while !left.isSet, !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let waiting = current.withLock { view in
                Set(view.ledger.members.keys.filter { !view.ledger.introduced.contains($0) })
            }
            let now = ContinuousClock.now
            unintroducedSince = unintroducedSince.filter { waiting.contains($0.key) }
            declared.formIntersection(waiting)
            for member in waiting.sorted() {
                let since = unintroducedSince[member] ?? now
                unintroducedSince[member] = since
                guard now - since >= Self.silenceLimit, declared.insert(member).inserted else { continue }
                logger.warning(
                    "member silent since it joined: declaring it to the group",
                    metadata: ["cluster.member": "\(member)"]
                )
                _ = await send(.silent(member), through: group, left: left)
            }
        }
    }

    private func changeMembership(
        members: [CPGMember],
        left: [(CPGMember, CPGEvent.LeaveReason)],
        joined: [CPGMember]
    ) -> [ClusterLedger.Decision] {
        let departedHosts = changeView { view in
            let hosts = left.compactMap { member, _ -> String? in
                if case .accepted(let hello) = view.members[member], hello.role == .host { return hello.hostName }
                return nil
            }
            return (hosts, view.ledger.changeMembership(members: members, left: left.map(\.0), joined: joined))
        }
        for (member, reason) in left {
            logger.notice("member left", metadata: ["cluster.member": "\(member)", "cluster.reason": "\(reason)"])
        }
        // Requests this host sent to a member that left will not be answered by it: their outcome is unknown.
        forwarding.executorsLeft(Set(left.map(\.0)))
        audits.left(Set(left.map(\.0)))
        for host in departedHosts.0 {
            logger.warning(
                "host left the cluster: its domains are not fenced until it is back or confirmed down",
                metadata: ["cluster.host": "\(host)"]
            )
        }
        return departedHosts.1
    }

    /// Takes a delivered message in; returns whether the sender's standing changed, and the requests decided.
    private func receive(
        _ bytes: [UInt8],
        from member: CPGMember,
        warned: inout Set<CPGMember>
    )
        -> (changed: Bool, decisions: [ClusterLedger.Decision])
    {
        let isLocal = member == current.withLock { $0.local }
        let result: ([ClusterLedger.StandingChange], [ClusterLedger.Decision])
        do {
            switch try ClusterMessage(decoding: bytes) {
            case .hello(let hello):
                result = changeView { $0.ledger.introduce(member, hello) }
            case .domains(let report):
                // Kept from this host and accepted hosts only: a refused member's view is not trusted.
                return (false, changeView { $0.ledger.report(report, from: member) })
            case .claim(let claim):
                let won = changeView { $0.ledger.claim(claim, by: member, at: .now) }
                if isLocal, !forwarding.claimDecided(claim, won: won), let group = joined.withLock({ $0 }) {
                    // Won after its wait ended: this host does not call back; the claim is given up at once.
                    let release = ClusterMessage.release(claim).encoded
                    followUps.withLock {
                        $0.append { try? await group.send(release, deadline: .now + .seconds(5)) }
                    }
                }
                return (false, [])
            case .release(let claim):
                changeView { $0.ledger.release(claim, by: member) }
                return (false, [])
            case .claimRequester(let found):
                changeView { $0.ledger.noteRequester(found, from: member, at: .now) }
                return (false, [])
            case .request(let request):
                return (false, changeView { $0.ledger.deliver(request, from: member) })
            case .withdraw(let serial):
                let (withdrawn, reason) = changeView {
                    ($0.ledger.withdraw(serial: serial, from: member), $0.ledger.unsettledReason)
                }
                if isLocal && withdrawn {
                    forwarding.fail(
                        serial,
                        reason:
                            "the cluster did not decide in time (\(reason ?? "membership changing")); nothing was done"
                    )
                }
                return (false, [])
            case .reply(let reply):
                // Every member: the fence it answers has ended (fence races). The receiver: its answer, taken
                // only from the member the cluster placed the request on.
                let fenced: Bool =
                    switch reply.outcome {
                    case .success: true
                    case .failure(let code, _): code == "timed_out"
                    }
                changeView {
                    $0.ledger.finishFence(.init(receiver: reply.receiver, serial: reply.serial), fenced: fenced)
                }
                if reply.receiver == current.withLock({ $0.local }) { forwarding.replied(reply, from: member) }
                return (false, [])
            case .done(let serial, let fenced):
                changeView { $0.ledger.finishFence(.init(receiver: member, serial: serial), fenced: fenced) }
                return (false, [])
            case .confirmDown(let confirmation):
                confirm(confirmation, from: member)
                return (false, [])
            case .departed(let report):
                changeView { $0.ledger.merge(report, from: member) }
                return (false, [])
            case .silent(let silent):
                guard current.withLock({ $0.ledger.isTrusted(member) }) else { return (false, []) }
                result = changeView {
                    $0.ledger.refuse(
                        silent,
                        reason: "it did not introduce itself within \(Self.silenceLimit) of joining"
                    )
                }
            case .auditQuery(let query):
                receive(query, from: member, isLocal: isLocal)
                return (false, [])
            case .auditPage(let page):
                if page.receiver == current.withLock({ $0.local }) { audits.received(page, from: member) }
                return (false, [])
            }
        } catch {
            let reason =
                if case .unsupportedVersion(let version) = error {
                    "it speaks cluster protocol \(version), this host \(ClusterMessage.protocolVersion)"
                } else {
                    "its message cannot be read (\(error))"
                }
            // A member that cannot introduce itself is refused; one already introduced is not judged by a
            // later unreadable message, which is dropped (logged once per member and membership).
            result = changeView { $0.ledger.refuse(member, reason: reason) }
            if result.0.isEmpty, warned.insert(member).inserted {
                logger.warning(
                    "dropped an unreadable message from a member (further ones are dropped silently)",
                    metadata: ["cluster.member": "\(member)", "error": "\(error)"]
                )
            }
        }
        let (changes, decisions) = result
        for change in changes {
            switch change.standing {
            case .accepted(let hello):
                logger.notice(
                    "member accepted",
                    metadata: [
                        "cluster.member": "\(change.member)", "cluster.host": "\(hello.hostName)",
                        "cluster.role": "\(hello.role.name)",
                    ]
                )
            case .refused(let reason):
                logger.error(
                    "member refused",
                    metadata: ["cluster.member": "\(change.member)", "cluster.reason": "\(reason)"]
                )
            case .pending:
                break
            }
        }
        return (!changes.isEmpty, decisions)
    }

    /// An operator's confirmation that a host is down, from an accepted member.
    private func confirm(_ confirmation: DownConfirmation, from member: CPGMember) {
        let accepted = changeView { view -> Bool? in
            guard view.ledger.isTrusted(member) else { return nil }
            return view.ledger.confirmDown(confirmation.hostName)
        }
        switch accepted {
        case nil:
            break
        case true?:
            logger.warning(
                "host confirmed down by an operator: its domains count as off while this partition is quorate",
                metadata: [
                    "cluster.host": "\(confirmation.hostName)", "cluster.confirmed_by": "\(confirmation.confirmedBy)",
                ]
            )
        case false?:
            logger.error(
                "refused to confirm a host down: it is a member of the cluster",
                metadata: [
                    "cluster.host": "\(confirmation.hostName)", "cluster.confirmed_by": "\(confirmation.confirmedBy)",
                ]
            )
        }
    }
}

/// A flag set once, read from other tasks.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)

    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

extension DomainReport.Domain {
    /// The domain as this host's hypervisor lists it.
    init(_ domain: DomainInfo) {
        self.init(uuid: domain.uuid, name: domain.name, state: domain.state.rawValue, isPersistent: domain.isPersistent)
    }
}

extension ClusterMembership {
    /// The group as this host sees it, for `FenceService.clusterStatus`.
    public var status: ClusterStatus {
        let view = self.view
        let ownName = hello.withLock { $0.hostName }
        func domains(_ member: CPGMember) -> [DomainInfo] {
            (view.domains[member] ?? []).map(DomainInfo.init)
        }
        var members: [ClusterStatus.Member] = []
        if let local = view.local {
            members.append(
                .init(
                    nodeID: local.nodeID,
                    pid: local.pid,
                    isLocal: true,
                    hostName: ownName,
                    standing: "local",
                    reason: nil,
                    role: view.ledger.localRole.name,
                    domains: domains(local)
                )
            )
        }
        for member in view.members.keys.sorted() {
            let (standing, host, reason, role): (String, String?, String?, String?) =
                switch view.members[member]! {
                case .pending: ("pending", nil, nil, nil)
                case .accepted(let hello): ("accepted", hello.hostName, nil, hello.role.name)
                case .refused(let why): ("refused", nil, why, nil)
                }
            members.append(
                .init(
                    nodeID: member.nodeID,
                    pid: member.pid,
                    isLocal: false,
                    hostName: host,
                    standing: standing,
                    reason: reason,
                    role: role,
                    domains: domains(member)
                )
            )
        }
        let departed = view.ledger.departed.keys.sorted().map { host in
            ClusterStatus.DepartedHost(
                hostName: host,
                confirmedDown: view.ledger.confirmedDown.contains(host),
                domains: (view.ledger.departed[host] ?? []).map(DomainInfo.init)
            )
        }
        return ClusterStatus(name: configuration.name, quorate: view.quorate, members: members, departed: departed)
    }
}
