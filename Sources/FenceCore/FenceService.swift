import Foundation
public import Logging
public import Store

/// The one path every fence request takes, from every front end.
///
/// For each request it: looks the domain up; writes the audit intent row (refusing the request if that
/// fails); waits for the domain's lock, so operations on one domain run one at a time while different
/// domains proceed in parallel; performs the action with fence_virtd's libvirt semantics; and completes
/// the audit row. The whole request is bounded by a timeout; a timed-out request is reported as failed.
///
/// Hypervisor calls run on a dedicated thread pool, never on Swift's cooperative pool.
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

        public init() {}
    }

    public let hypervisor: any Hypervisor
    public let store: AuditStore
    public let configuration: Configuration
    private let logger: Logger
    /// Counters and latencies of fence operations since start.
    public let metrics = FenceMetrics()
    private let locks = DomainLocks()
    private let pool = BlockingThreadPool(name: "fencegate.hypervisor")

    public init(hypervisor: any Hypervisor, store: AuditStore, configuration: Configuration = .init(), logger: Logger) {
        self.hypervisor = hypervisor
        self.store = store
        self.configuration = configuration
        self.logger = logger
    }

    // MARK: - Reads (not audited)

    /// Every defined domain, sorted by name.
    public func domains() async throws(FenceError) -> [DomainInfo] {
        try await blocking(action: .status, target: "*") { [hypervisor] in try hypervisor.domains() }
    }

    /// One domain by name or UUID.
    public func domain(_ target: DomainTarget) async throws(FenceError) -> DomainInfo {
        try await blocking(action: .status, target: target.text) { [hypervisor] in try hypervisor.domain(target) }
    }

    /// Succeeds if the hypervisor is reachable (fence_xvm's `monitor`).
    public func monitor() async throws(FenceError) {
        do {
            try await blocking(action: .status, target: "*") { [hypervisor] in try hypervisor.checkConnection() }
            metrics.hypervisor(up: true)
        } catch {
            metrics.hypervisor(up: false)
            throw error
        }
    }

    /// Succeeds if the audit log can be written now (for readiness checks).
    public func checkAuditLog() async throws(FenceError) {
        do {
            try await store.checkWritable()
        } catch {
            throw FenceError.auditUnavailable(reason: "\(error)")
        }
    }

    /// Lists the domains for a front end's request and records it in the audit log (action `list`).
    public func list(origin: RequestOrigin) async throws(FenceError) -> [DomainInfo] {
        let started = ContinuousClock.now
        let requestedAt = Date()
        do {
            let domains = try await domains()
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
            action: action, target: target, origin: origin, requestedAt: Date(), since: ContinuousClock.now,
            result: .failure, error: nil, message: reason, errorCode: "unsupported")
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
                    finishedAt: requestedAt.addingTimeInterval(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)))
        } catch {
            logger.error("could not record a request in the audit log", metadata: ["error": "\(error)", "fence.action": "\(action)"])
        }
    }

    /// Records a request that a front end refused (bad credentials, out of scope, denied by groups),
    /// with result `refused`. Nothing reaches the hypervisor.
    /// - Throws: `.auditUnavailable` if the row could not be written.
    @discardableResult
    public func recordRefusal(_ request: FenceRequest, reason: String) async throws(FenceError) -> Int64 {
        let intent = AuditIntent(
            source: request.origin.frontEnd.rawValue, requester: request.origin.requester,
            clientAddress: request.origin.clientAddress, target: request.target.text, domainName: nil,
            domainUUID: nil, action: request.action.rawValue, requestedAt: Date())
        metrics.operationRejected(
            action: request.action.rawValue, result: AuditResult.refused.rawValue,
            source: request.origin.frontEnd.rawValue)
        var metadata: Logger.Metadata = [
            "fence.action": "\(request.action.rawValue)", "fence.target": "\(request.target)",
            "fence.origin": "\(request.origin.frontEnd.rawValue)", "fence.reason": "\(reason)",
        ]
        do {
            let id = try await store.record(
                intent,
                AuditCompletion(
                    result: .refused, powerState: nil, errorCode: "refused", message: reason, finishedAt: Date()))
            metadata["audit.id"] = "\(id)"
            logger.notice("fence request refused", metadata: metadata)
            return id
        } catch {
            logger.notice("fence request refused (not audited: the audit log is unavailable)", metadata: metadata)
            throw FenceError.auditUnavailable(reason: "\(error)")
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

    // MARK: - Fencing (audited)

    /// Performs `request` and records it in the audit log.
    ///
    /// - Throws: `FenceError`: `.domainNotFound` (also for `status`: "not found" is distinct from "off"),
    ///   `.hypervisorUnavailable`, `.auditUnavailable` (nothing was done), `.timedOut`, `.operationFailed`.
    public func perform(_ request: FenceRequest) async throws(FenceError) -> FenceOutcome {
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started + (request.timeout ?? configuration.operationTimeout)
        let requestedAt = Date()
        var intent = AuditIntent(
            source: request.origin.frontEnd.rawValue, requester: request.origin.requester,
            clientAddress: request.origin.clientAddress, target: request.target.text, domainName: nil,
            domainUUID: nil, action: request.action.rawValue, requestedAt: requestedAt)
        var logger = self.logger
        logger[metadataKey: "fence.action"] = "\(request.action.rawValue)"
        logger[metadataKey: "fence.target"] = "\(request.target)"
        logger[metadataKey: "fence.origin"] = "\(request.origin.frontEnd.rawValue)"

        // 1. Resolve the domain (a read; nothing changes yet).
        let resolved: DomainInfo
        do {
            resolved = try await withDeadline(deadline) { [self] in
                try await blocking(action: request.action, target: request.target.text) { [hypervisor] in
                    try hypervisor.domain(request.target)
                }
            }
        } catch {
            let failure = fenceError(error, request, elapsed: clock.now - started)
            await recordUnstarted(intent, failure, logger: logger)
            metrics.operationRejected(
                action: request.action.rawValue, result: failure.isTimeout ? AuditResult.timedOut.rawValue : AuditResult.failure.rawValue,
                source: request.origin.frontEnd.rawValue)
            throw failure
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
        metrics.operationFinished(
            action: request.action.rawValue, result: auditResult.rawValue, source: request.origin.frontEnd.rawValue,
            seconds: Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
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

    /// Runs a hypervisor read on the pool, bounded by the operation timeout.
    private func blocking<T: Sendable>(
        action: FenceAction, target: String, _ body: @escaping @Sendable () throws -> T
    ) async throws(FenceError) -> T {
        let timeout = configuration.operationTimeout
        do {
            return try await withDeadline(ContinuousClock.now + timeout) { [pool] in try await pool.run(body) }
        } catch is DeadlineExceeded {
            throw .timedOut(action: action, target: target, after: timeout)
        } catch {
            throw FenceError(mapping: error, action: action, target: target, uri: hypervisor.uri)
        }
    }

    private func fenceError(_ error: any Error, _ request: FenceRequest, elapsed: Duration) -> FenceError {
        if error is DeadlineExceeded || error is CancellationError {
            return .timedOut(action: request.action, target: request.target.text, after: elapsed)
        }
        return FenceError(mapping: error, action: request.action, target: request.target.text, uri: hypervisor.uri)
    }

    /// A request that failed before its intent row: one finished row, best effort (the failure is thrown anyway).
    private func recordUnstarted(_ intent: AuditIntent, _ failure: FenceError, logger: Logger) async {
        let completion = AuditCompletion(
            result: failure.isTimeout ? .timedOut : .failure, powerState: nil, errorCode: failure.code, message: failure.description, finishedAt: Date())
        do {
            _ = try await store.record(intent, completion)
        } catch {
            logger.error("could not record a failed request in the audit log", metadata: ["error": "\(error)"])
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
