import FoundationEssentials
import Locking
public import Logging
public import Store
import Synchronization

/// The one path every fence request takes, from every front end.
///
/// For each request it: checks the target; looks the domain up and asks the request's access policy about
/// *that* domain (so what is authorized is exactly what is acted on, by UUID from then on); writes the audit
/// intent row (refusing the request if that fails); waits for the domain's lock, so operations on one
/// domain run one at a time while different domains proceed in parallel; performs the action with
/// fence_virtd's libvirt semantics; and completes the audit row. The whole request is bounded by a timeout;
/// a timed-out request is reported as failed.
///
/// Hypervisor calls run on a bounded thread pool, never on Swift's cooperative pool.
public final class FenceService: Sendable {
    /// Tunables, with defaults suited to production.
    public struct Configuration: Sendable {
        /// The longest a request may take, lock wait included.
        public var operationTimeout: Duration = .seconds(60)
        /// How long a reboot waits for the domain to be off after destroying it (fence_virtd: 15 s).
        public var shutOffWait: Duration = .seconds(15)
        /// How often a reboot re-reads the state while it waits.
        public var shutOffPollInterval: Duration = .milliseconds(100)
        /// Attempts to write a completion row before giving up (the row then stays `started`).
        public var completionAttempts: Int = 5
        /// The most threads blocked in hypervisor calls at once; further calls wait, in order, for one. A
        /// quarter of them (at least one) serve reads only, the rest fences and everything they call, so that
        /// reads piling up behind a hypervisor that holds a domain (a destroy of a stuck QEMU) never take
        /// the threads a fence needs.
        public var hypervisorThreads = 32
        /// The most hypervisor calls waiting for a thread; beyond that a call fails at once (503).
        public var hypervisorQueue = 1024
        /// How long a health check's answer is reused.
        public var healthMaximumAge: Duration = .seconds(1)
        /// The longest a health check (and fence_xvm's `monitor`) waits for the hypervisor.
        public var healthTimeout: Duration = .seconds(5)
        /// Refused requests that get an audit row of their own, per client and minute; the rest are counted
        /// in one summary row per client and minute.
        public var refusalsPerClientPerMinute = 10
        /// Refused requests that get a row of their own per minute, all clients together.
        public var refusalsPerMinute = 60
        /// Reads (list, monitor, REST's and Redfish's GETs of domains) that get an audit row of their own, per
        /// requester and minute; the rest are counted in one summary row per requester and minute, so that a
        /// monitoring script cannot fill the disk (and then stop fencing).
        public var readsPerClientPerMinute = 60
        /// Reads that get a row of their own per minute, all requesters together.
        public var readsPerMinute = 600
        /// Threads for reads: listings, status, the GETs (see `hypervisorThreads`).
        public var hypervisorReadThreads: Int { max(1, hypervisorThreads / 4) }
        /// Threads for fences and the calls they make (lookups included).
        public var hypervisorChangeThreads: Int { max(1, hypervisorThreads - hypervisorReadThreads) }
        /// The refusal and read limits' window: a minute, shorter in tests.
        package var refusalWindow: Duration = .seconds(60)
        /// How fence races are settled (see `FenceRaceRules`).
        public var races = FenceRaceRules()
        /// The longest one query of the audit log may run (`GET /operations`, another cluster host's page);
        /// it is then stopped and answered 503, so that a broad query cannot hold a core or the log's WAL.
        /// Queries never delay a fence's rows, whatever their length: they run on a connection of their own.
        public var auditQueryTimeLimit = AuditReader.defaultTimeLimit
        /// How long audit rows are kept (`deleteExpiredAuditRows`).
        public var auditRetention = AuditRetention()

        public init() {}
    }

    /// The hypervisor and the audit log are the service's own: front ends reach them only through it.
    let hypervisor: any Hypervisor
    let store: AuditStore
    /// API tokens, kept in the audit database; checked by `authenticate`.
    let tokens: AccessTokens
    public let configuration: Configuration
    let logger: Logger
    /// Counters and latencies of fence operations since start.
    public let metrics = FenceMetrics()
    let locks = DomainLocks()
    /// Hypervisor calls of fences (and everything else but reads); `readPool` has the reads'.
    let pool: BlockingThreadPool
    let readPool: BlockingThreadPool
    let probe: HypervisorProbe
    let refusals: AuditRowLimiter
    let reads: AuditRowLimiter
    let ledger = FenceLedger()
    /// Operations (`perform`) holding a domain's lock now; `statusAtOnce` answers only while there are none.
    let changesUnderWay = Atomic<Int>(0)
    private let cluster = Locked<(any ClusterDirectory)?>(nil)
    /// Client addresses that presented a valid fence token lately: the HTTP server keeps connections for them.
    public let credentialedClients = CredentialedClients()
    /// Queries of the audit log, off the store's queue (see `AuditReader`); opened on first use.
    let auditReader = Locked<AuditReader?>(nil)

    public init(hypervisor: any Hypervisor, store: AuditStore, configuration: Configuration = .init(), logger: Logger) {
        self.hypervisor = hypervisor
        self.store = store
        self.tokens = AccessTokens(store: store)
        self.configuration = configuration
        self.logger = logger
        let pool = BlockingThreadPool(
            name: "fencegate.hypervisor",
            maximumThreads: configuration.hypervisorChangeThreads,
            maximumQueued: configuration.hypervisorQueue,
            resumesCallersHere: true
        )
        self.pool = pool
        self.readPool = BlockingThreadPool(
            name: "fencegate.hypervisor-read",
            maximumThreads: configuration.hypervisorReadThreads,
            maximumQueued: configuration.hypervisorQueue,
            resumesCallersHere: true
        )
        self.probe = HypervisorProbe(
            timeout: min(configuration.healthTimeout, configuration.operationTimeout)
        ) { [hypervisor] in
            do {
                try await pool.run { try hypervisor.checkConnection() }
                return .success(())
            } catch {
                return .failure(FenceError(mapping: error, action: .status, target: "*", uri: hypervisor.uri))
            }
        }
        self.refusals = AuditRowLimiter(
            kind: "refusal",
            limits: AuditRowLimiter.Limits(
                perClient: configuration.refusalsPerClientPerMinute,
                overall: configuration.refusalsPerMinute,
                window: configuration.refusalWindow
            )
        )
        self.reads = AuditRowLimiter(
            kind: "read",
            limits: AuditRowLimiter.Limits(
                perClient: configuration.readsPerClientPerMinute,
                overall: configuration.readsPerMinute,
                window: configuration.refusalWindow
            )
        )
    }

    /// Makes the cluster's status readable by front ends (cluster mode).
    public func attach(_ directory: any ClusterDirectory) {
        cluster.withLock { $0 = directory }
    }

    /// Cluster mode: the router that decides where requests about domains run; nil outside cluster mode.
    var router: (any ClusterRouter)? { cluster.withLock { $0 } as? any ClusterRouter }

    /// Cluster mode: claims the fence_xvm call back of a guest's request (`key`: the request's duplicate
    /// key) among the hosts that heard it; true if this host calls back. Always true outside cluster mode.
    /// `requesterAddress`: the sender's address, for a fence (off, reboot): the domain this host finds behind
    /// it goes with the claim (fence races).
    public func claimCallback(
        _ key: [UInt8],
        requesterAddress: String? = nil,
        deadline: ContinuousClock.Instant
    ) async -> Bool {
        guard let router else { return true }
        var requester: DomainInfo?
        if let requesterAddress, configuration.races.isEnabled {
            let probe = FenceRequest(
                action: .off,
                target: DomainTarget(""),
                origin: RequestOrigin(frontEnd: .multicast, requester: nil, sendingDomain: .address(requesterAddress))
            )
            requester = await sendingDomain(of: probe, deadline: deadline)
        }
        return await router.claimCallback(key, requester: requester, deadline: deadline)
    }

    /// Cluster mode: gives a claimed call back up (it failed), so that another host may answer a copy.
    public func releaseCallback(_ key: [UInt8]) async {
        await router?.releaseCallback(key)
    }

    /// The cluster's status with only the domains `access` lets its holder see; nil outside cluster mode.
    /// Not audited: it reads no hypervisor, only what the members reported.
    public func clusterStatus(visibleTo access: any AccessPolicy = UnrestrictedAccess()) -> ClusterStatus? {
        guard var status = cluster.withLock({ $0 })?.status else { return nil }
        for index in status.members.indices {
            let all = status.members[index].domains
            status.members[index].domains = all.filter { access.lists($0, among: all) }
        }
        for index in status.departed.indices {
            let all = status.departed[index].domains
            status.departed[index].domains = all.filter { access.lists($0, among: all) }
        }
        return status
    }

    /// Cluster mode: each domain of the cluster (by UUID) with the host it is on; nil outside cluster mode.
    public func domainHosts() -> [String: ClusterDomain]? {
        guard let router else { return nil }
        return Dictionary(router.clusterDomains().map { ($0.domain.uuid, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Cluster mode: whether this host's partition is quorate (`.some(nil)` while unknown); nil outside
    /// cluster mode. Cheap, for health checks.
    public func clusterQuorum() -> Bool?? {
        cluster.withLock { $0 }.map { $0.quorate }
    }

    /// A signal after each change of the hypervisor's domains (defined, undefined, started, stopped), as its
    /// events report them: each call gives a stream of its own, in which signals not yet consumed coalesce.
    public func domainChanges() -> AsyncStream<Void> {
        let (changes, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        hypervisor.observeChanges { signal.yield() }
        return changes
    }

    /// This host's name: the one the cluster knows it by in cluster mode, else the system's.
    public var hostName: String {
        cluster.withLock { $0 }?.status.members.first(where: \.isLocal)?.hostName ?? ProcessInfo.processInfo.hostName
    }

    /// The hypervisor's URI, for messages.
    public var hypervisorURI: String { hypervisor.uri }

    /// The audit database's path, for messages.
    public var auditLogPath: String { store.path }

    /// Threads of the hypervisor pools (fences' and reads'), how many are in a call, and how many calls wait;
    /// for tests and metrics.
    package var hypervisorPoolCensus: (threads: Int, busy: Int, queued: Int) {
        let (changes, reads) = (pool.census, readPool.census)
        return (changes.threads + reads.threads, changes.busy + reads.busy, changes.queued + reads.queued)
    }

    // MARK: - Reads for the command line and tests (not audited: their callers can read the database itself)

    /// Every defined domain that `access` lets its holder see, sorted by name; `.timedOut` if the hypervisor
    /// does not answer by `deadline` (default: the operation timeout).
    public func domains(
        visibleTo access: any AccessPolicy = UnrestrictedAccess(),
        deadline: ContinuousClock.Instant? = nil
    ) async throws(FenceError) -> [DomainInfo] {
        let all = try await blocking(action: .status, target: "*", deadline: deadline) { [hypervisor] in
            try hypervisor.domains()
        }
        return all.filter { access.lists($0, among: all) }
    }

    /// One domain by name or UUID (no access policy).
    public func domain(_ target: DomainTarget) async throws(FenceError) -> DomainInfo {
        try await blocking(action: .status, target: target.text) { [hypervisor] in try hypervisor.domain(target) }
    }

    // MARK: - Reads for front ends (audited, as every front end's request is)

    /// Reads the domain `request` names, if its access policy allows (REST's and Redfish's GET of one domain):
    /// a `status` that does not wait for the domain's lock (fence_xvm's status goes through `status(_:)` and
    /// does). Recorded as one finished row with the power state read; a refusal that conceals the domain
    /// throws `.domainNotFound`, exactly as for a domain that does not exist.
    public func read(_ request: FenceRequest) async throws(FenceError) -> DomainInfo {
        let started = ContinuousClock.now
        var intent = AuditIntent(request)
        let result: Result<DomainInfo, FenceError>
        do {
            let domain = try await checkAndResolve(
                request,
                deadline: started + (request.timeout ?? configuration.operationTimeout)
            )
            intent.domainName = domain.name
            intent.domainUUID = domain.uuid
            result = .success(domain)
        } catch {
            if error.recorded { throw error.failure }
            result = .failure(error.failure)
        }
        await recordRead(
            intent,
            since: started,
            result: result.auditResult,
            error: result.failure,
            message: result.failure?.description,
            powerState: result.success?.power
        )
        return try result.get()
    }

    /// Succeeds if the hypervisor is reachable now (fence_xvm's `monitor`, the periodic check). Concurrent
    /// callers share one check; none waits longer than the health timeout.
    public func monitor() async throws(FenceError) {
        try await checkHypervisor(maximumAge: .zero)
    }

    /// What `/healthz` reports: the hypervisor (an answer at most `healthMaximumAge` old, shared by concurrent
    /// callers, never waiting longer than `healthTimeout`) and the audit log (a commit that reached the disk
    /// within the last second, or a probe row written now).
    public func health() async -> (hypervisor: Bool, auditLog: Bool) {
        async let auditLog: Bool = (try? await checkAuditLog()) != nil
        let hypervisor = (try? await checkHypervisor(maximumAge: configuration.healthMaximumAge)) != nil
        return (hypervisor, await auditLog)
    }

    private func checkHypervisor(maximumAge: Duration) async throws(FenceError) {
        let outcome = await probe.probe(uri: hypervisor.uri, maximumAge: maximumAge)
        metrics.hypervisor(up: (try? outcome.get()) != nil)
        try outcome.get()
    }

    /// Succeeds if the audit log can be written now (for readiness checks and before each metrics scrape);
    /// the answer is also the `fencegate_audit_log_writable` gauge, and whether fences use the space kept for
    /// them the `fencegate_audit_reserve_in_use` gauge.
    public func checkAuditLog() async throws(FenceError) {
        do {
            defer { metrics.auditReserve(inUse: store.reserveInUse) }
            try await store.checkWritable()
            metrics.auditLog(writable: true)
        } catch {
            metrics.auditLog(writable: false)
            throw FenceError.auditUnavailable(reason: "\(error)")
        }
    }

    /// Lists the domains `access` lets the requester see for a front end's request (fence_xvm's list, REST's
    /// `GET /domains`, Redfish's Systems), and records it in the audit log (action `list`).
    public func list(
        origin: RequestOrigin,
        visibleTo access: any AccessPolicy = UnrestrictedAccess()
    ) async throws(FenceError) -> [DomainInfo] {
        try await recordingRead("list", origin: origin) { () throws(FenceError) in
            let domains: [DomainInfo]
            if let router {
                // Cluster mode: every host's domains, as the members reported them.
                let all = router.clusterDomains().map(\.domain)
                domains = all.filter { access.lists($0, among: all) }
            } else {
                domains = try await self.domains(visibleTo: access)
            }
            return (domains, "\(domains.count) domains")
        }
    }

    /// Checks the hypervisor for a front end's request (fence_xvm's `monitor`) and records it (action `monitor`).
    public func monitor(origin: RequestOrigin) async throws(FenceError) {
        try await recordingRead("monitor", origin: origin) { () throws(FenceError) in
            try await monitor()
            return ((), nil)
        }
    }

    /// Runs a front end's read of no one domain (`list`, `monitor`), which answers a value and a message for
    /// the audit row, and records it with its outcome.
    private func recordingRead<T>(
        _ action: String,
        origin: RequestOrigin,
        _ body: () async throws(FenceError) -> (T, String?)
    ) async throws(FenceError) -> T {
        let started = ContinuousClock.now
        let intent = AuditIntent(action: action, target: "*", origin: origin)
        let result: Result<(T, String?), FenceError>
        do {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        await recordRead(
            intent,
            since: started,
            result: result.auditResult,
            error: result.failure,
            message: result.failure?.description ?? result.success?.1
        )
        return try result.get().0
    }

    /// True while an operation on the domain with `uuid` runs (for front ends that offer "do not wait").
    public func isBusy(domainUUID uuid: String) async -> Bool {
        locks.isHeld(uuid)
    }

    /// How many operations wait for the domain's lock; for tests that prove operations on one domain queue.
    package func waitingOperations(domainUUID uuid: String) async -> Int {
        locks.waiterCount(uuid)
    }

    // MARK: - Resolving and authorizing

    /// Why a request did not resolve to a domain it may act on.
    struct Unresolved: Error {
        let failure: FenceError
        /// True if a refusal row was written (or counted) already.
        let recorded: Bool
    }

    /// `resolve`, after checking that the target can name a domain at all.
    func checkAndResolve(
        _ request: FenceRequest,
        deadline: ContinuousClock.Instant
    ) async throws(Unresolved) -> DomainInfo {
        if let problem = request.target.problem {
            throw Unresolved(failure: .invalidTarget(reason: problem), recorded: false)
        }
        return try await resolve(request, deadline: deadline)
    }

    /// The domain `request` names, if its access policy allows `request` on it. Looked up once; the policy
    /// judges that very domain; everything after acts on its UUID.
    func resolve(_ request: FenceRequest, deadline: ContinuousClock.Instant) async throws(Unresolved) -> DomainInfo {
        if let router, request.origin.receivedOn == nil {
            return try await resolveInCluster(request, router: router)
        }
        let found: DomainInfo?
        do {
            found = try await blocking(action: request.action, target: request.target.text, deadline: deadline) {
                [hypervisor] in try hypervisor.domain(request.target)
            }
        } catch .domainNotFound {
            found = nil
        } catch {
            throw Unresolved(failure: error, recorded: false)
        }
        return try await authorize(request, on: found, lookup: localLookup(request, deadline: deadline))
    }

    /// Every domain of this host's hypervisor, for access policies that judge a domain among all of them.
    func localLookup(_ request: FenceRequest, deadline: ContinuousClock.Instant) -> DomainLookup {
        DomainLookup(all: { [self] () throws(FenceError) in
            try await blocking(action: request.action, target: "*", deadline: deadline) { [hypervisor] in
                try hypervisor.domains()
            }
        })
    }

    /// Cluster mode: the domain `request` names among the members' reports, if its access policy allows.
    private func resolveInCluster(
        _ request: FenceRequest,
        router: any ClusterRouter
    ) async throws(Unresolved)
        -> DomainInfo
    {
        let found: DomainInfo?
        switch router.locate(request.target) {
        case .found(let located): found = located.domain
        case .notFound: found = nil
        case .ambiguous(let hosts):
            throw Unresolved(
                failure: .invalidTarget(
                    reason:
                        "several domains named '\(request.target.text)' in the cluster (on \(hosts.joined(separator: ", "))): name one by its UUID"
                ),
                recorded: false
            )
        case .unavailable(let reason):
            throw Unresolved(failure: .clusterUnavailable(target: request.target.text, reason: reason), recorded: false)
        }
        let lookup = DomainLookup(all: { router.clusterDomains().map(\.domain) })
        return try await authorize(request, on: found, lookup: lookup)
    }

    /// Asks the request's access policy about `found` (nil: no such domain); writes a refusal's row.
    func authorize(
        _ request: FenceRequest,
        on found: DomainInfo?,
        lookup: DomainLookup
    ) async throws(Unresolved)
        -> DomainInfo
    {
        let refusal: AccessRefusal?
        do {
            refusal = try await request.access.refusal(of: request, on: found, lookup: lookup)
        } catch {
            throw Unresolved(
                failure: FenceError(
                    mapping: error,
                    action: request.action,
                    target: request.target.text,
                    uri: hypervisor.uri
                ),
                recorded: false
            )
        }
        if let refusal {
            // The sender is authenticated (a token, the fence_xvm key): its refusals are not rate-limited, so
            // that a refusal that conceals a domain costs exactly what a request for an unknown one does.
            await writeRefusal(request, reason: refusal.reason)
            let failure: FenceError =
                refusal.concealsDomain
                ? .domainNotFound(target: request.target.text)
                : .refused(target: request.target.text, reason: refusal.reason)
            throw Unresolved(failure: failure, recorded: true)
        }
        guard let found else {
            throw Unresolved(failure: .domainNotFound(target: request.target.text), recorded: false)
        }
        return found
    }

    // MARK: - Fencing (audited)

    /// Performs `request` and records it in the audit log.
    ///
    /// - Throws: `FenceError`: `.invalidTarget`, `.refused` (the access policy said no; recorded as refused),
    ///   `.domainNotFound` (also for `status`: "not found" is distinct from "off"; and for a domain the policy
    ///   conceals), `.hypervisorUnavailable`, `.auditUnavailable` (nothing was done), `.timedOut`,
    ///   `.operationFailed`.
    public func perform(_ request: FenceRequest) async throws(FenceError) -> FenceOutcome {
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started + (request.timeout ?? configuration.operationTimeout)
        let requestedAt = Date()
        var intent = AuditIntent(request, requestedAt: requestedAt)
        var logger = self.logger
        logger[metadataKey: "fence.action"] = "\(request.action.rawValue)"
        logger[metadataKey: "fence.target"] = "\(request.target)"
        logger[metadataKey: "fence.origin"] = "\(request.origin.frontEnd.rawValue)"
        if let requestID = request.origin.requestID { logger[metadataKey: "request.id"] = "\(requestID)" }

        // 1. Check the target, resolve the domain, and authorize on what was resolved (nothing changes yet).
        let resolved: DomainInfo
        do {
            resolved = try await checkAndResolve(request, deadline: deadline)
        } catch {
            if !error.recorded {
                await recordUnstarted(intent, error.failure, logger: logger)
                metrics.operationRejected(
                    action: request.action.rawValue,
                    result: error.failure.isTimeout ? AuditResult.timedOut.rawValue : AuditResult.failure.rawValue,
                    source: request.origin.frontEnd.rawValue
                )
            }
            throw error.failure
        }
        intent.domainName = resolved.name
        intent.domainUUID = resolved.uuid
        logger[metadataKey: "fence.domain"] = "\(resolved.name)"

        // 2. The intent row, before anything changes. No row, no operation.
        let operationID: Int64
        do {
            operationID = try await store.begin(intent)
        } catch {
            metrics.auditLog(writable: false)
            logger.error("audit intent row could not be written; request refused", metadata: ["error": "\(error)"])
            throw FenceError.auditUnavailable(reason: "\(error)")
        }
        logger[metadataKey: "audit.id"] = "\(operationID)"

        // 2b. Fence races: a fence from a domain that is being fenced, or was just fenced, is refused; the
        // target is marked as being fenced before anything changes.
        let fences = configuration.races.isEnabled && [.off, .reboot].contains(request.action)
        if fences {
            if let winner = await settleRace(request, target: resolved, operationID: operationID, deadline: deadline) {
                let failure = FenceError.requesterFenced(
                    target: request.target.text,
                    requester: winner.requester,
                    operation: winner.operation
                )
                metrics.operationRejected(
                    action: request.action.rawValue,
                    result: AuditResult.refused.rawValue,
                    source: request.origin.frontEnd.rawValue
                )
                await completeRefused(
                    operationID,
                    failure,
                    message: "refused: requester was fenced by operation \(winner.operation)",
                    logger: logger
                )
                logger.notice(
                    "fence request refused: its requester lost a fence race",
                    metadata: [
                        "fence.requester_domain": "\(winner.requester)", "fence.fenced_by": "\(winner.operation)",
                    ]
                )
                throw failure
            }
        }

        metrics.operationStarted()
        // 2c. Cluster mode: the cluster decides where the request runs; if elsewhere, that host's answer is
        // this one's.
        var hereTicket: UInt64?
        if let router, request.origin.receivedOn == nil {
            // The cluster settles fence races at delivery, from the requester found here.
            let requester = fences ? await sendingDomain(of: request, deadline: deadline) : nil
            let routed = RoutedRequest(
                action: request.action,
                domain: resolved,
                target: request.target.text,
                origin: request.origin,
                waitForDomain: request.waitForDomain,
                requester: requester,
                raceWindow: fences ? configuration.races.window : .zero
            )
            let outcome = await router.route(routed, deadline: deadline)
            if case .here(let ticket) = outcome {
                hereTicket = ticket
            } else {
                return try await finishRouted(
                    outcome,
                    request: request,
                    domain: resolved,
                    operationID: operationID,
                    fences: fences,
                    since: started,
                    logger: logger
                )
            }
        }

        // 3. Lock the domain and act, within the deadline.
        let operationLogger = logger
        let result: Result<Execution, FenceError>
        do {
            let execution = try await withDeadline(
                deadline,
                operation: { [self] in
                    if request.waitForDomain {
                        try await locks.acquire(resolved.uuid)
                    } else if !locks.tryAcquire(resolved.uuid) {
                        throw FenceError.domainBusy(target: request.target.text)
                    }
                    if Task.isCancelled {
                        locks.release(resolved.uuid)
                        throw CancellationError()
                    }
                    changesUnderWay.add(1, ordering: .relaxed)
                    // Once started, the action runs to its end even if the deadline passes meanwhile:
                    // an unstructured task does not inherit the cancellation. Started on this thread, up
                    // to its first wait (for the hypervisor's pool): no hop to start it.
                    let action = Task.immediate { try await execute(request.action, on: resolved) }
                    let outcome = await action.result
                    changesUnderWay.subtract(1, ordering: .relaxed)
                    locks.release(resolved.uuid)
                    return try outcome.get()
                },
                lateCompletion: { [self] late in
                    await recordLateCompletion(operationID, late, logger: operationLogger)
                }
            )
            result = .success(execution)
        } catch {
            result = .failure(fenceError(error, request, elapsed: clock.now - started))
        }

        // 4. Complete the row (a request forwarded by another host of the cluster says which).
        let duration = clock.now - started
        let forwardedFrom = request.origin.receivedOn.map { "received on \($0)" }
        let auditResult: AuditResult
        switch result {
        case .success: auditResult = .success
        case .failure(.timedOut): auditResult = .timedOut
        case .failure: auditResult = .failure
        }
        if fences {
            // A timed-out fence may still happen: its domain counts as fenced.
            ledger.finish(target: resolved.uuid, operation: operationID, fenced: auditResult != .failure)
        }
        if fences, let hereTicket, let router {
            await router.finished(ticket: hereTicket, fenced: auditResult != .failure)
        }
        metrics.operationFinished(
            action: request.action.rawValue,
            result: auditResult.rawValue,
            source: request.origin.frontEnd.rawValue,
            duration: duration
        )
        switch result {
        case .success(let execution):
            return await succeeded(
                request,
                operationID,
                domain: execution.domain,
                note: execution.note,
                auditMessage: [forwardedFrom, execution.note].compactMap { $0 }.joined(separator: "; ").nilIfEmpty,
                duration: duration,
                logger: logger
            )
        case .failure(let failure):
            await complete(
                operationID,
                AuditCompletion(
                    result: auditResult,
                    powerState: nil,
                    errorCode: failure.code,
                    message: [forwardedFrom, failure.description].compactMap { $0 }.joined(separator: "; "),
                    finishedAt: Date()
                ),
                logger: logger
            )
            logger.error("fence operation failed", metadata: ["error": "\(failure)"])
            throw failure
        }
    }
}

extension String {
    /// Nil for the empty string.
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

extension DomainInfo {
    func with(state: DomainState) -> DomainInfo {
        var copy = self
        copy.state = state
        return copy
    }
}

extension Result where Failure == FenceError {
    var success: Success? { try? get() }

    var failure: FenceError? {
        if case .failure(let error) = self { return error }
        return nil
    }

    var auditResult: AuditResult {
        switch self {
        case .success: .success
        case .failure(let error): error.auditResult
        }
    }
}
