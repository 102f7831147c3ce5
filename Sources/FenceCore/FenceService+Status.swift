import FoundationEssentials
import Logging
import Store
import Synchronization

/// fence_xvm's `status`: a read that waits for the domain's lock, recorded after its answer.
extension FenceService {
    /// The state of the domain `request` (a `status`) names, read under the domain's lock, so that a status
    /// asked while an operation on the domain runs answers with the state after it; if the request's access
    /// policy allows (a refusal that conceals the domain throws `.domainNotFound`, as for an unknown one).
    ///
    /// It changes nothing, so its row is recorded with the audit log's next commit, after the answer
    /// (`AuditStore.recordEventually`), where `perform` makes an intent row durable before it acts. In
    /// cluster mode the cluster routes it, as `perform` does.
    ///
    /// - Parameter started: when the request began here (a caller that tried `statusAtOnce` first passes
    ///   when it did, so that the request's deadline and duration count from then).
    public func status(
        _ request: FenceRequest,
        since started: ContinuousClock.Instant = .now
    ) async throws(FenceError) -> DomainInfo {
        precondition(request.action == .status, "status(_:) takes status requests")
        if router != nil, request.origin.receivedOn == nil { return try await perform(request).domain }
        let deadline = started + (request.timeout ?? configuration.operationTimeout)
        var intent = AuditIntent(request, requestedAt: Date(since: started))
        let domain: DomainInfo
        let stateRead: Result<DomainState?, FenceError>?
        do throws(Unresolved) {
            if let problem = request.target.problem {
                throw Unresolved(failure: .invalidTarget(reason: problem), recorded: false)
            }
            let found = try await lookUpUnderLock(request, deadline: deadline)
            domain = try await authorize(request, on: found.domain, lookup: localLookup(request, deadline: deadline))
            stateRead = found.state
        } catch {
            if !error.recorded {
                await recordRead(
                    intent,
                    since: started,
                    result: error.failure.auditResult,
                    error: error.failure,
                    message: error.failure.description
                )
            }
            throw error.failure
        }
        intent.domainName = domain.name
        intent.domainUUID = domain.uuid
        metrics.operationStarted()
        let result: Result<DomainInfo, FenceError>
        do {
            let state: DomainState?
            if let stateRead {
                state = try stateRead.get()
            } else {
                state = try await stateAfterWaiting(for: domain, request, deadline: deadline)
            }
            guard let state else { throw FenceError.domainNotFound(target: domain.name) }
            result = .success(domain.with(state: state))
        } catch {
            result = .failure(fenceError(error, request, elapsed: ContinuousClock.now - started))
        }
        let completion = completion(of: request, result, intent: intent, since: started)
        if case .success = result {
            if admitsStatusRow(intent), !sparesRow(.read) { await store.recordEventually(intent, completion) }
        } else if !sparesRow(.read) {
            await store.recordEventually(intent, completion)
        }
        if let failure = result.failure {
            logger.error(
                "status request failed",
                metadata: [
                    "fence.target": "\(request.target)", "fence.origin": "\(request.origin.frontEnd.rawValue)",
                    "error": "\(failure)",
                ]
            )
        }
        return try result.get()
    }

    /// fence_xvm's `status`, answered on the calling thread (a thread that may block: a front end's pool)
    /// when nothing needs waiting for; nil in every other case, which `status(_:since:)` then answers.
    ///
    /// Answered here only if: not in cluster mode; the target can name a domain; no operation that changes a
    /// domain holds a domain's lock (libvirt holds a domain it destroys, and a lookup would wait for it); the
    /// hypervisor's health check is not overdue; a hypervisor connection is idle (none is opened or waited
    /// for); a read thread is free (`BlockingThreadPool.runInPlace`: its share is taken while the calls
    /// run, so the bound on threads in libvirt holds); the audit log has room for the row; the domain is found,
    /// its lock free and the access policy allows the request at once (`AccessPolicy.allowsAtOnce`); and the
    /// state read. The row is recorded as `status` records it. Nothing bounds the time here but libvirt's own
    /// answer (libvirt may hold a domain for reasons of its own, an outside destroy say): at most
    /// `hypervisorReadThreads` callers can wait in it at once, the rest take the usual path; a caller bounds
    /// its own wait (the gateway ends the session at a status's deadline, its thread running on).
    public func statusAtOnce(_ request: FenceRequest, since started: ContinuousClock.Instant) -> DomainInfo? {
        guard request.action == .status, request.target.problem == nil, changesUnderWay.load(ordering: .relaxed) == 0,
            !probe.isOverdue, store.hasRoomForDeferredRows, router == nil
        else { return nil }
        let target = request.target
        let read = readPool.runInPlace { [locks, hypervisor] () -> DomainInfo? in
            let answer = try? hypervisor.withIdleConnection { reader -> DomainInfo? in
                let found = try reader.find(target)
                let isPersistent = try found.isPersistent()
                guard locks.tryAcquire(found.uuid) else { return nil }
                let state = Result { try found.state() }
                locks.release(found.uuid)
                guard let state = try state.get() else { return nil }
                let domain = DomainInfo(name: found.name, uuid: found.uuid, state: state, isPersistent: isPersistent)
                return request.access.allowsAtOnce(request, on: domain) ? domain : nil
            }
            return answer ?? nil
        }
        guard let domain = read ?? nil else { return nil }
        var intent = AuditIntent(request, requestedAt: Date(since: started))
        intent.domainName = domain.name
        intent.domainUUID = domain.uuid
        metrics.operationStarted()
        let completion = completion(of: request, .success(domain), intent: intent, since: started)
        if admitsStatusRow(intent), !sparesRow(.read) { store.recordWithNextCommit(intent, completion) }
        return domain
    }

    /// Counts a status that was carried out, and its row's completion.
    private func completion(
        of request: FenceRequest,
        _ result: Result<DomainInfo, FenceError>,
        intent: AuditIntent,
        since started: ContinuousClock.Instant
    ) -> AuditCompletion {
        let duration = ContinuousClock.now - started
        let auditResult = result.auditResult
        metrics.operationFinished(
            action: request.action.rawValue,
            result: auditResult.rawValue,
            source: request.origin.frontEnd.rawValue,
            duration: duration
        )
        let failure = result.failure
        return AuditCompletion(
            result: auditResult,
            powerState: result.success?.power.rawValue,
            errorCode: failure?.code,
            message: [request.origin.receivedOn.map { "received on \($0)" }, failure?.description]
                .compactMap { $0 }.joined(separator: "; ").nilIfEmpty,
            finishedAt: intent.requestedAt.addingTimeInterval(duration.seconds)
        )
    }

    /// What one hop to the hypervisor pool found: the domain (nil: none by that name or UUID) and, if nobody
    /// held its lock, its state read under the lock (nil: the lock was held).
    ///
    /// `domain.state` is that read's state, or `.noState` where there is none (the lock was held, the read
    /// failed or found the domain gone): `status` answers only with a state read under the lock, and the
    /// access policy, which judges the domain before any failure is reported, looks at its name and UUID.
    private struct LockedLookup: Sendable {
        var domain: DomainInfo?
        var state: Result<DomainState?, FenceError>?
    }

    /// Looks the domain up and, while nobody holds its lock (the usual case), reads its state under the lock
    /// in the same hop. A failed read is returned, not thrown: it is reported only once the access policy
    /// has judged the domain (a concealed domain must look exactly like a missing one).
    private func lookUpUnderLock(
        _ request: FenceRequest,
        deadline: ContinuousClock.Instant
    ) async throws(Unresolved) -> LockedLookup {
        let (target, uri) = (request.target, hypervisor.uri)
        do {
            return try await blocking(action: .status, target: target.text, deadline: deadline) {
                [locks, hypervisor] in
                try hypervisor.withReader { reader in
                    let found: any FoundDomain
                    let isPersistent: Bool
                    do {
                        found = try reader.find(target)
                        isPersistent = try found.isPersistent()
                    } catch {
                        let failure = FenceError(mapping: error, action: .status, target: target.text, uri: uri)
                        if case .domainNotFound = failure { return LockedLookup(domain: nil, state: nil) }
                        throw failure
                    }
                    func domain(state: DomainState) -> DomainInfo {
                        DomainInfo(name: found.name, uuid: found.uuid, state: state, isPersistent: isPersistent)
                    }
                    guard locks.tryAcquire(found.uuid) else {
                        return LockedLookup(domain: domain(state: .noState), state: nil)
                    }
                    defer { locks.release(found.uuid) }
                    let state = Result { () throws(FenceError) in
                        do {
                            return try found.state()
                        } catch {
                            throw FenceError(mapping: error, action: .status, target: target.text, uri: uri)
                        }
                    }
                    return LockedLookup(
                        domain: domain(state: (try? state.get()).flatMap { $0 } ?? .noState),
                        state: state
                    )
                }
            }
        } catch {
            throw Unresolved(failure: error, recorded: false)
        }
    }

    /// The domain's state read once the operation that holds its lock has finished (or `.domainBusy` if the
    /// request does not wait).
    private func stateAfterWaiting(
        for domain: DomainInfo,
        _ request: FenceRequest,
        deadline: ContinuousClock.Instant
    ) async throws -> DomainState? {
        guard request.waitForDomain else { throw FenceError.domainBusy(target: request.target.text) }
        let uuid = domain.uuid
        return try await withDeadline(deadline) { [self] in
            try await locks.acquire(uuid)
            defer { locks.release(uuid) }
            return try await hypervisorCall { try $0.state(ofDomain: uuid) }
        }
    }
}

extension Date {
    /// The wall-clock time of `instant`, a moment of the past.
    init(since instant: ContinuousClock.Instant) {
        self = Date().addingTimeInterval(-(ContinuousClock.now - instant).seconds)
    }
}

extension FenceError {
    /// The audit result of a request that failed with this error.
    var auditResult: AuditResult { isTimeout ? .timedOut : .failure }
}
