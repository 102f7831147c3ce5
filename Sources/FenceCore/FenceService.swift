import Foundation
public import Logging
public import Store

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
        /// The most threads blocked in hypervisor calls at once; further calls wait, in order, for one.
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
        /// The refusal limits' window: a minute, shorter in tests.
        package var refusalWindow: Duration = .seconds(60)
        /// How fence races are settled (see `FenceRaceRules`).
        public var races = FenceRaceRules()

        public init() {}
    }

    public let hypervisor: any Hypervisor
    public let store: AuditStore
    public let configuration: Configuration
    private let logger: Logger
    /// Counters and latencies of fence operations since start.
    public let metrics = FenceMetrics()
    private let locks = DomainLocks()
    private let pool: BlockingThreadPool
    private let probe: HypervisorProbe
    private let refusals: RefusalLimiter
    private let ledger = FenceLedger()

    public init(hypervisor: any Hypervisor, store: AuditStore, configuration: Configuration = .init(), logger: Logger) {
        self.hypervisor = hypervisor
        self.store = store
        self.configuration = configuration
        self.logger = logger
        let pool = BlockingThreadPool(
            name: "fencegate.hypervisor", maximumThreads: configuration.hypervisorThreads,
            maximumQueued: configuration.hypervisorQueue)
        self.pool = pool
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
        self.refusals = RefusalLimiter(
            limits: RefusalLimiter.Limits(
                perClient: configuration.refusalsPerClientPerMinute, overall: configuration.refusalsPerMinute,
                window: configuration.refusalWindow))
    }

    /// Threads of the hypervisor pool, how many are in a call, and how many calls wait; for tests and metrics.
    package var hypervisorPoolCensus: (threads: Int, busy: Int, queued: Int) { pool.census }

    // MARK: - Reads (not audited)

    /// Every defined domain that `access` lets its holder see, sorted by name.
    public func domains(visibleTo access: any AccessPolicy = UnrestrictedAccess()) async throws(FenceError) -> [DomainInfo] {
        let all = try await blocking(action: .status, target: "*") { [hypervisor] in try hypervisor.domains() }
        return all.filter { access.lists($0, among: all) }
    }

    /// One domain by name or UUID, for reads that the command line and tests make (no access policy).
    public func domain(_ target: DomainTarget) async throws(FenceError) -> DomainInfo {
        try await blocking(action: .status, target: target.text) { [hypervisor] in try hypervisor.domain(target) }
    }

    /// Reads the domain `request` names, if its access policy allows: a `status` that is answered but not
    /// audited (REST's and Redfish's GET of one domain). A refusal is audited; one that conceals the domain
    /// throws `.domainNotFound`, exactly as for a domain that does not exist.
    public func read(_ request: FenceRequest) async throws(FenceError) -> DomainInfo {
        if let problem = request.target.problem { throw .invalidTarget(reason: problem) }
        do {
            return try await resolve(request, deadline: ContinuousClock.now + configuration.operationTimeout)
        } catch {
            throw error.failure
        }
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

    /// Succeeds if the audit log can be written now (for readiness checks).
    public func checkAuditLog() async throws(FenceError) {
        do {
            try await store.checkWritable()
        } catch {
            throw FenceError.auditUnavailable(reason: "\(error)")
        }
    }

    /// Lists the domains `access` lets the requester see for a front end's request, and records it in the
    /// audit log (action `list`).
    public func list(origin: RequestOrigin, visibleTo access: any AccessPolicy = UnrestrictedAccess()) async throws(FenceError) -> [DomainInfo] {
        let started = ContinuousClock.now
        let requestedAt = Date()
        do {
            let domains = try await domains(visibleTo: access)
            await recordFinished(
                action: "list", target: "*", origin: origin, requestedAt: requestedAt, since: started,
                result: .success, error: nil, message: "\(domains.count) domains")
            return domains
        } catch {
            await recordFinished(
                action: "list", target: "*", origin: origin, requestedAt: requestedAt, since: started,
                result: error.isTimeout ? .timedOut : .failure, error: error, message: error.description)
            throw error
        }
    }

    /// Checks the hypervisor for a front end's request (fence_xvm's `monitor`) and records it (action `monitor`).
    public func monitor(origin: RequestOrigin) async throws(FenceError) {
        let started = ContinuousClock.now
        let requestedAt = Date()
        do {
            try await monitor()
            await recordFinished(
                action: "monitor", target: "*", origin: origin, requestedAt: requestedAt, since: started,
                result: .success, error: nil, message: nil)
        } catch {
            await recordFinished(
                action: "monitor", target: "*", origin: origin, requestedAt: requestedAt, since: started,
                result: error.isTimeout ? .timedOut : .failure, error: error, message: error.description)
            throw error
        }
    }

    /// Records a request this service does not carry out (fence_xvm's `null`, unknown request codes) as a
    /// failure, so that every request a front end answers is in the audit log.
    public func recordUnsupported(action: String, target: String, origin: RequestOrigin, reason: String) async {
        await recordFinished(
            action: action, target: DomainTarget(target).auditText, origin: origin, requestedAt: Date(),
            since: ContinuousClock.now, result: .failure, error: nil, message: reason, errorCode: "unsupported")
    }

    private func recordFinished(
        action: String, target: String, origin: RequestOrigin, requestedAt: Date, since started: ContinuousClock.Instant,
        result: AuditResult, error: FenceError?, message: String?, errorCode: String? = nil
    ) async {
        let intent = AuditIntent(
            source: origin.frontEnd.rawValue, requester: origin.requester, clientAddress: origin.clientAddress,
            target: target, domainName: nil, domainUUID: nil, action: action, requestedAt: requestedAt)
        let elapsed = ContinuousClock.now - started
        metrics.operationRejected(action: action, result: result.rawValue, source: origin.frontEnd.rawValue)
        do {
            _ = try await store.record(
                intent,
                AuditCompletion(
                    result: result, powerState: nil, errorCode: errorCode ?? error?.code, message: message,
                    finishedAt: requestedAt.addingTimeInterval(elapsed.fenceTimeInterval)))
        } catch {
            logger.error("could not record a request in the audit log", metadata: ["error": "\(error)", "fence.action": "\(action)"])
        }
    }

    // MARK: - Refusals

    /// Records a request refused before its sender was authenticated (missing or wrong credentials), with
    /// result `refused`; nothing reaches the hypervisor. Since a peer needs no credentials to be refused, these
    /// refusals are rate-limited per client (`Configuration.refusalsPerClientPerMinute`, `refusalsPerMinute`):
    /// the others are counted and recorded together in one summary row per client and minute.
    /// - Returns: the row's id, or nil if the refusal was counted for a summary or could not be recorded
    ///   (then the failure is logged: the request is refused either way).
    @discardableResult
    public func recordRefusal(_ request: FenceRequest, reason: String) async -> Int64? {
        let client = "\(request.origin.frontEnd.rawValue) \(request.origin.clientAddress ?? request.origin.requester ?? "-")"
        let (decision, ended) = refusals.admit(request, reason: reason, client: client)
        if let ended { await recordSummary(ended) }
        switch decision {
        case .count(let key, let summaryDue, let window):
            metrics.operationRejected(
                action: request.action.rawValue, result: AuditResult.refused.rawValue,
                source: request.origin.frontEnd.rawValue)
            metrics.refusalUnrecorded()
            logger.debug(
                "fence request refused (counted for the summary row)",
                metadata: refusalMetadata(request, reason: reason))
            if let summaryDue {
                _ = DeadlineScheduler.shared.schedule(at: summaryDue) { [self] in
                    guard let summary = refusals.takeSummary(client: key, window: window) else { return }
                    Task { await recordSummary(summary) }
                }
            }
            return nil
        case .record:
            return await writeRefusal(request, reason: reason)
        }
    }

    /// Writes the refusal's row (always: the sender is authenticated, or this one is within its limits).
    @discardableResult
    private func writeRefusal(_ request: FenceRequest, reason: String) async -> Int64? {
        metrics.operationRejected(
            action: request.action.rawValue, result: AuditResult.refused.rawValue,
            source: request.origin.frontEnd.rawValue)
        var metadata = refusalMetadata(request, reason: reason)
        let intent = AuditIntent(
            source: request.origin.frontEnd.rawValue, requester: request.origin.requester,
            clientAddress: request.origin.clientAddress, target: request.target.auditText,
            domainName: nil, domainUUID: nil, action: request.action.rawValue, requestedAt: Date())
        do {
            let id = try await store.record(
                intent,
                AuditCompletion(
                    result: .refused, powerState: nil, errorCode: "refused", message: reason, finishedAt: Date()))
            metadata["audit.id"] = "\(id)"
            logger.notice("fence request refused", metadata: metadata)
            return id
        } catch {
            metadata["error"] = "\(error)"
            logger.error("fence request refused, and the refusal could not be recorded in the audit log", metadata: metadata)
            return nil
        }
    }

    private func refusalMetadata(_ request: FenceRequest, reason: String) -> Logger.Metadata {
        [
            "fence.action": "\(request.action.rawValue)", "fence.target": "\(request.target)",
            "fence.origin": "\(request.origin.frontEnd.rawValue)", "fence.reason": "\(reason)",
            "peer.address": "\(request.origin.clientAddress ?? "-")",
        ]
    }

    /// Writes the summary rows of every client's refusals that are still only counted (at shutdown, so
    /// that none is lost).
    public func recordPendingRefusals() async {
        for summary in refusals.takeAllSummaries() { await recordSummary(summary) }
    }

    /// The row that accounts for a client's refusals that did not get rows of their own.
    private func recordSummary(_ summary: RefusalLimiter.Summary) async {
        let request = summary.request
        let limits = refusals.limits
        let message =
            "\(summary.count) more refusal\(summary.count == 1 ? "" : "s") from \(summary.client) between "
            + "\(RFC3339.format(summary.first)) and \(RFC3339.format(summary.last)) not recorded one by one "
            + "(at most \(limits.perClient) rows per client and \(limits.overall) in all per \(limits.window.fenceSeconds)); "
            + "the last: \(request.action.rawValue) of '\(request.target.auditText)': \(summary.reason)"
        let intent = AuditIntent(
            source: request.origin.frontEnd.rawValue, requester: request.origin.requester,
            clientAddress: request.origin.clientAddress, target: request.target.auditText,
            domainName: nil, domainUUID: nil, action: request.action.rawValue, requestedAt: summary.first)
        do {
            let id = try await store.record(
                intent,
                AuditCompletion(
                    result: .refused, powerState: nil, errorCode: "refusals_not_recorded", message: message,
                    finishedAt: summary.last))
            logger.notice(
                "refused requests summarized", metadata: ["audit.id": "\(id)", "fence.refusals": "\(summary.count)", "peer.address": "\(summary.client)"])
        } catch {
            logger.error("could not record a summary of refused requests", metadata: ["error": "\(error)", "fence.refusals": "\(summary.count)"])
        }
    }

    /// True while an operation on the domain with `uuid` runs (for front ends that offer "do not wait").
    public func isBusy(domainUUID uuid: String) async -> Bool {
        await locks.isHeld(uuid)
    }

    /// How many operations wait for the domain's lock; for tests that prove operations on one domain queue.
    package func waitingOperations(domainUUID uuid: String) async -> Int {
        await locks.waiterCount(uuid)
    }

    // MARK: - Resolving and authorizing

    /// Why a request did not resolve to a domain it may act on.
    struct Unresolved: Error {
        let failure: FenceError
        /// True if a refusal row was written (or counted) already.
        let recorded: Bool
    }

    /// `resolve`, after checking that the target can name a domain at all.
    private func checkAndResolve(_ request: FenceRequest, deadline: ContinuousClock.Instant) async throws(Unresolved) -> DomainInfo {
        if let problem = request.target.problem { throw Unresolved(failure: .invalidTarget(reason: problem), recorded: false) }
        return try await resolve(request, deadline: deadline)
    }

    /// The domain `request` names, if its access policy allows `request` on it. Looked up once; the policy
    /// judges that very domain; everything after acts on its UUID.
    private func resolve(_ request: FenceRequest, deadline: ContinuousClock.Instant) async throws(Unresolved) -> DomainInfo {
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
        let lookup = DomainLookup(
            all: { [self] () throws(FenceError) in
                try await blocking(action: request.action, target: "*", deadline: deadline) { [hypervisor] in
                    try hypervisor.domains()
                }
            })
        let refusal: AccessRefusal?
        do {
            refusal = try await request.access.refusal(of: request, on: found, lookup: lookup)
        } catch {
            throw Unresolved(
                failure: FenceError(mapping: error, action: request.action, target: request.target.text, uri: hypervisor.uri),
                recorded: false)
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
        guard let found else { throw Unresolved(failure: .domainNotFound(target: request.target.text), recorded: false) }
        return found
    }

    // MARK: - Fence races

    /// The domain that sent `request`, if the front end told how to know it and it can be found: the domain
    /// a token names; or the one whose address the guest's is, from `FenceRaceRules.requesters`, else a
    /// domain being fenced or fenced lately that had it when its fence began, else from the hypervisor (the
    /// running domain that has it, if exactly one does). Nil if unknown.
    func sendingDomain(of request: FenceRequest, deadline: ContinuousClock.Instant) async -> DomainInfo? {
        let target: DomainTarget
        switch request.origin.sendingDomain {
        case nil:
            return nil
        case .named(let named):
            target = named
        case .address(let address):
            if let configured = configuration.races.configuredDomain(for: address) {
                target = configured
            } else if let fenced = ledger.fencedDomain(withAddress: address) {
                // Off by now, or about to be: the hypervisor may no longer report its addresses.
                return fenced
            } else {
                let canonical = canonicalAddress(address)
                return try? await blocking(action: request.action, target: address, deadline: deadline) { [hypervisor] in
                    let owners = try hypervisor.domains().filter { $0.power == .on }.filter { domain in
                        ((try? hypervisor.addresses(ofDomain: domain.uuid)) ?? []).contains { canonicalAddress($0) == canonical }
                    }
                    return owners.count == 1 ? owners[0] : nil
                }
            }
        }
        return try? await blocking(action: request.action, target: target.text, deadline: deadline) { [hypervisor] in
            try hypervisor.domain(target)
        }
    }

    /// Marks `target` as being fenced by `operationID`, unless the domain that sent the request is being
    /// fenced or was fenced within the window: then returns that domain's name and the operation that
    /// fenced it. A request from a domain other than a preferred one, to fence a preferred one, first waits
    /// the grace period, so that a race between them is decided for the preferred one. The requester is
    /// looked up only when it matters: when a domain is being fenced or was fenced lately, or for priority.
    private func settleRace(
        _ request: FenceRequest, target: DomainInfo, operationID: Int64, deadline: ContinuousClock.Instant
    ) async -> (requester: String, operation: Int64)? {
        let rules = configuration.races
        var winner: (requester: String, operation: Int64)?
        if rules.prefers(target), let requester = await sendingDomain(of: request, deadline: deadline),
            requester.uuid != target.uuid, !rules.prefers(requester)
        {
            let wait = min(rules.grace, ContinuousClock.now.duration(to: deadline))
            if wait > .zero { try? await Task.sleep(for: wait) }
            if let operation = ledger.claim(target: target, by: operationID, requester: requester.uuid, window: rules.window) {
                winner = (requester.name, operation)
            }
        } else if !ledger.claimIfQuiet(target: target, by: operationID, window: rules.window) {
            let requester = await sendingDomain(of: request, deadline: deadline)
            if let operation = ledger.claim(target: target, by: operationID, requester: requester?.uuid, window: rules.window) {
                winner = (requester?.name ?? "?", operation)
            }
        }
        guard winner == nil, rules.recordsGuestAddresses else { return winner }
        // The target's addresses while it still runs (nothing has been done to it yet), so that a request it
        // sends before it dies (a guest's, known by its address) is known as its.
        let addresses =
            (try? await blocking(action: request.action, target: target.name, deadline: deadline) { [hypervisor] in
                try hypervisor.addresses(ofDomain: target.uuid)
            }) ?? []
        ledger.record(addresses: addresses, of: target)
        return nil
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
        var intent = AuditIntent(
            source: request.origin.frontEnd.rawValue, requester: request.origin.requester,
            clientAddress: request.origin.clientAddress, target: request.target.auditText,
            domainName: nil, domainUUID: nil, action: request.action.rawValue, requestedAt: requestedAt)
        var logger = self.logger
        logger[metadataKey: "fence.action"] = "\(request.action.rawValue)"
        logger[metadataKey: "fence.target"] = "\(request.target)"
        logger[metadataKey: "fence.origin"] = "\(request.origin.frontEnd.rawValue)"

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
                    source: request.origin.frontEnd.rawValue)
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
                    target: request.target.text, requester: winner.requester, operation: winner.operation)
                metrics.operationRejected(
                    action: request.action.rawValue, result: AuditResult.refused.rawValue,
                    source: request.origin.frontEnd.rawValue)
                await complete(
                    operationID,
                    AuditCompletion(
                        result: .refused, powerState: nil, errorCode: failure.code,
                        message: "refused: requester was fenced by operation \(winner.operation)", finishedAt: Date()),
                    logger: logger)
                logger.notice(
                    "fence request refused: its requester lost a fence race",
                    metadata: ["fence.requester_domain": "\(winner.requester)", "fence.fenced_by": "\(winner.operation)"])
                throw failure
            }
        }

        // 3. Lock the domain and act, within the deadline.
        metrics.operationStarted()
        let operationLogger = logger
        let result: Result<Execution, FenceError>
        do {
            let execution = try await withDeadline(
                deadline,
                operation: { [self] in
                    if request.waitForDomain {
                        try await locks.acquire(resolved.uuid)
                    } else if await !locks.tryAcquire(resolved.uuid) {
                        throw FenceError.domainBusy(target: request.target.text)
                    }
                    if Task.isCancelled {
                        await locks.release(resolved.uuid)
                        throw CancellationError()
                    }
                    // Once started, the action runs to its end even if the deadline passes meanwhile:
                    // an unstructured task does not inherit the cancellation.
                    let action = Task { try await execute(request.action, on: resolved) }
                    let outcome = await action.result
                    await locks.release(resolved.uuid)
                    return try outcome.get()
                },
                lateCompletion: { [self] late in
                    await recordLateCompletion(operationID, late, logger: operationLogger)
                })
            result = .success(execution)
        } catch {
            result = .failure(fenceError(error, request, elapsed: clock.now - started))
        }

        // 4. Complete the row.
        let duration = clock.now - started
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
        metrics.operationFinished(
            action: request.action.rawValue, result: auditResult.rawValue, source: request.origin.frontEnd.rawValue,
            seconds: duration.fenceTimeInterval)
        switch result {
        case .success(let execution):
            await complete(
                operationID,
                AuditCompletion(
                    result: .success, powerState: execution.domain.power.rawValue, errorCode: nil,
                    message: execution.note, finishedAt: Date()),
                logger: logger)
            logger.notice(
                "fence operation succeeded",
                metadata: ["fence.power": "\(execution.domain.power.rawValue)", "fence.duration": "\(duration)"])
            return FenceOutcome(
                operationID: operationID, action: request.action, domain: execution.domain,
                power: execution.domain.power, duration: duration, note: execution.note)
        case .failure(let failure):
            await complete(
                operationID,
                AuditCompletion(
                    result: auditResult, powerState: nil, errorCode: failure.code, message: failure.description,
                    finishedAt: Date()),
                logger: logger)
            logger.error("fence operation failed", metadata: ["error": "\(failure)"])
            throw failure
        }
    }

    // MARK: - Actions, with fence_virtd's libvirt semantics

    /// What an action did: the domain afterwards, and a remark.
    struct Execution: Sendable {
        var domain: DomainInfo
        var note: String?
    }

    private func execute(_ action: FenceAction, on domain: DomainInfo) async throws -> Execution {
        // Re-read: the state seen at lookup may be stale after waiting for the lock.
        guard let state = try await hypervisorCall({ try $0.state(ofDomain: domain.uuid) }) else {
            throw FenceError.domainNotFound(target: domain.name)
        }
        switch action {
        case .status:
            return Execution(domain: domain.with(state: state), note: nil)
        case .off:
            if state == .shutOff { return Execution(domain: domain.with(state: state), note: "already off") }
            try await destroy(domain, action: .off)
            return Execution(domain: try await refreshed(domain), note: nil)
        case .on:
            if state != .shutOff { return Execution(domain: domain.with(state: state), note: "already on") }
            do {
                try await hypervisorCall { try $0.start(domain: domain.uuid) }
            } catch {
                // Someone else may have started it meanwhile; running is what was asked.
                guard try await hypervisorCall({ try $0.state(ofDomain: domain.uuid) }) != .shutOff else { throw error }
            }
            return Execution(domain: try await refreshed(domain), note: nil)
        case .reboot:
            return try await reboot(domain, state: state)
        case .shutdown, .gracefulReboot, .nmi:
            return try await ask(action, domain, state: state)
        }
    }

    /// The requests a guest acts on itself: asked, not waited for (a guest may take minutes, or ignore them).
    private func ask(_ action: FenceAction, _ domain: DomainInfo, state: DomainState) async throws -> Execution {
        guard state != .shutOff else {
            if action == .shutdown { return Execution(domain: domain.with(state: state), note: "already off") }
            throw FenceError.notRunning(action: action, target: domain.name)
        }
        let note: String
        switch action {
        case .shutdown:
            try await hypervisorCall { try $0.shutdown(domain: domain.uuid) }
            note = "shutdown requested; the guest powers off when its OS does"
        case .gracefulReboot:
            try await hypervisorCall { try $0.reboot(domain: domain.uuid) }
            note = "restart requested; the guest restarts when its OS does"
        default:
            try await hypervisorCall { try $0.injectNMI(domain: domain.uuid) }
            note = "NMI injected"
        }
        return Execution(domain: try await refreshed(domain), note: note)
    }

    /// Force off, wait until off, start again. A domain that was off stays off and reports success;
    /// a failed restart is reported in the note, and the result is still success (the domain is fenced).
    private func reboot(_ domain: DomainInfo, state: DomainState) async throws -> Execution {
        if state == .shutOff {
            return Execution(domain: domain.with(state: state), note: "was off; left off")
        }
        // A transient domain vanishes when destroyed: keep its definition to start it again.
        let definition: String? =
            domain.isPersistent ? nil : try await hypervisorCall { try $0.definition(ofDomain: domain.uuid) }
        try await destroy(domain, action: .reboot)
        try await waitUntilOff(domain)
        do {
            if let definition {
                try await hypervisorCall { try $0.startTransient(definition: definition) }
            } else {
                try await hypervisorCall { try $0.start(domain: domain.uuid) }
            }
        } catch {
            let reason = FenceError(mapping: error, action: .reboot, target: domain.name, uri: hypervisor.uri)
            logger.warning(
                "reboot: domain is off but could not be started again",
                metadata: ["fence.domain": "\(domain.name)", "error": "\(reason)"])
            let after = (try? await refreshed(domain)) ?? domain.with(state: .shutOff)
            return Execution(domain: after, note: "fenced (off), but restart failed: \(reason)")
        }
        return Execution(domain: try await refreshed(domain), note: nil)
    }

    /// Destroys the domain; an error is forgiven if the domain is off (or gone) anyway.
    private func destroy(_ domain: DomainInfo, action: FenceAction) async throws {
        do {
            try await hypervisorCall { try $0.destroy(domain: domain.uuid) }
        } catch {
            let state = try await hypervisorCall { try $0.state(ofDomain: domain.uuid) }
            guard state == nil || state == .shutOff else { throw error }
        }
    }

    private func waitUntilOff(_ domain: DomainInfo) async throws {
        let clock = ContinuousClock()
        let limit = clock.now + configuration.shutOffWait
        while true {
            let state = try await hypervisorCall { try $0.state(ofDomain: domain.uuid) }
            if state == nil || state == .shutOff { return }
            guard clock.now < limit else {
                throw FenceError.operationFailed(
                    action: .reboot, target: domain.name,
                    reason: "still \(state?.rawValue ?? "present") \(configuration.shutOffWait.fenceSeconds) after destroy")
            }
            try? await Task.sleep(for: configuration.shutOffPollInterval)
        }
    }

    /// The domain with its current state; `.shutOff` if it no longer exists (a destroyed transient domain).
    private func refreshed(_ domain: DomainInfo) async throws -> DomainInfo {
        let state = try await hypervisorCall { try $0.state(ofDomain: domain.uuid) }
        return domain.with(state: state ?? .shutOff)
    }

    // MARK: - Plumbing

    private func hypervisorCall<T: Sendable>(_ body: @escaping @Sendable (any Hypervisor) throws -> T) async throws -> T {
        try await pool.run { [hypervisor] in try body(hypervisor) }
    }

    /// Runs a hypervisor read on the pool, bounded by the operation timeout or `deadline`, whichever comes
    /// first.
    private func blocking<T: Sendable>(
        action: FenceAction, target: String, deadline: ContinuousClock.Instant? = nil,
        _ body: @escaping @Sendable () throws -> T
    ) async throws(FenceError) -> T {
        let started = ContinuousClock.now
        let limit = min(started + configuration.operationTimeout, deadline ?? .now + configuration.operationTimeout)
        do {
            return try await withDeadline(limit) { [pool] in try await pool.run(body) }
        } catch is DeadlineExceeded {
            throw .timedOut(action: action, target: target, after: started.duration(to: .now))
        } catch {
            let failure = FenceError(mapping: error, action: action, target: target, uri: hypervisor.uri)
            noteIfUnavailable(failure)
            throw failure
        }
    }

    private func fenceError(_ error: any Error, _ request: FenceRequest, elapsed: Duration?) -> FenceError {
        if error is DeadlineExceeded || error is CancellationError {
            let after = elapsed ?? (request.timeout ?? configuration.operationTimeout)
            return .timedOut(action: request.action, target: request.target.text, after: after)
        }
        let failure = FenceError(mapping: error, action: request.action, target: request.target.text, uri: hypervisor.uri)
        noteIfUnavailable(failure)
        return failure
    }

    /// A call that found the hypervisor unreachable tells the health check and the metric at once.
    private func noteIfUnavailable(_ failure: FenceError) {
        guard case .hypervisorUnavailable = failure else { return }
        probe.noteUnavailable()
        metrics.hypervisor(up: false)
    }

    /// A request that failed before its intent row: one finished row, best effort (the failure is thrown anyway).
    private func recordUnstarted(_ intent: AuditIntent, _ failure: FenceError, logger: Logger) async {
        let completion = AuditCompletion(
            result: failure.isTimeout ? .timedOut : .failure, powerState: nil, errorCode: failure.code, message: failure.description, finishedAt: Date())
        do {
            let id = try await store.record(intent, completion)
            logger.notice("fence request failed before it started", metadata: ["audit.id": "\(id)", "error": "\(failure)"])
        } catch {
            logger.error("could not record a failed request in the audit log", metadata: ["error": "\(error)", "fence.failure": "\(failure)"])
        }
    }

    /// Completes a row, retrying a few times: the operation has happened, so its result must not be lost.
    private func complete(_ id: Int64, _ completion: AuditCompletion, logger: Logger) async {
        for attempt in 1...max(1, configuration.completionAttempts) {
            do {
                try await store.complete(id, completion)
                return
            } catch {
                logger.error(
                    "could not complete the audit row", metadata: ["error": "\(error)", "audit.attempt": "\(attempt)"])
                try? await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    /// After a timeout, the abandoned action may still finish: note how, so the record tells the truth.
    private func recordLateCompletion(_ id: Int64, _ late: Result<Execution, any Error>, logger: Logger) async {
        let note: String
        switch late {
        case .success(let execution):
            note = "after the timeout, the hypervisor call finished: domain is \(execution.domain.power.rawValue)"
        case .failure(is CancellationError):
            note = "after the timeout, the request gave up waiting for the domain lock; nothing was done"
        case .failure(let error):
            note = "after the timeout, the hypervisor call failed: \(error)"
        }
        logger.warning("operation finished after its timeout", metadata: ["fence.late": "\(note)"])
        do {
            try await store.appendNote(id, note)
        } catch {
            logger.error("could not record a late completion", metadata: ["error": "\(error)"])
        }
    }
}

extension DomainInfo {
    func with(state: DomainState) -> DomainInfo {
        var copy = self
        copy.state = state
        return copy
    }
}
