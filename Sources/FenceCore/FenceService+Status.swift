import Foundation
import Logging
import Store

/// fence_xvm's `status`: a read that waits for the domain's lock, recorded after its answer.
extension FenceService {
    /// The state of the domain `request` (a `status`) names, read under the domain's lock, so that a status
    /// asked while an operation on the domain runs answers with the state after it; if the request's access
    /// policy allows (a refusal that conceals the domain throws `.domainNotFound`, as for an unknown one).
    ///
    /// It changes nothing, so its row is recorded with the audit log's next commit, after the answer
    /// (`AuditStore.recordEventually`), where `perform` makes an intent row durable before it acts. In
    /// cluster mode the cluster routes it, as `perform` does.
    public func status(_ request: FenceRequest) async throws(FenceError) -> DomainInfo {
        precondition(request.action == .status, "status(_:) takes status requests")
        if router != nil, request.origin.receivedOn == nil { return try await perform(request).domain }
        let started = ContinuousClock.now
        let deadline = started + (request.timeout ?? configuration.operationTimeout)
        var intent = AuditIntent(request)
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
                await recordFinished(
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
        let duration = ContinuousClock.now - started
        let auditResult = result.auditResult
        metrics.operationFinished(
            action: request.action.rawValue,
            result: auditResult.rawValue,
            source: request.origin.frontEnd.rawValue,
            duration: duration
        )
        let failure = result.failure
        await store.recordEventually(
            intent,
            AuditCompletion(
                result: auditResult,
                powerState: result.success?.power.rawValue,
                errorCode: failure?.code,
                message: [request.origin.receivedOn.map { "received on \($0)" }, failure?.description]
                    .compactMap { $0 }.joined(separator: "; ").nilIfEmpty,
                finishedAt: intent.requestedAt.addingTimeInterval(duration.seconds)
            )
        )
        if let failure {
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

    /// What one hop to the hypervisor pool found: the domain (nil: none by that name or UUID) and, if nobody
    /// held its lock, its state read under the lock (nil: the lock was held).
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
                let found: DomainInfo
                do {
                    found = try hypervisor.domain(target)
                } catch {
                    let failure = FenceError(mapping: error, action: .status, target: target.text, uri: uri)
                    if case .domainNotFound = failure { return LockedLookup(domain: nil, state: nil) }
                    throw failure
                }
                guard locks.tryAcquire(found.uuid) else { return LockedLookup(domain: found, state: nil) }
                defer { locks.release(found.uuid) }
                let state = Result { () throws(FenceError) in
                    do {
                        return try hypervisor.state(ofDomain: found.uuid)
                    } catch {
                        throw FenceError(mapping: error, action: .status, target: target.text, uri: uri)
                    }
                }
                return LockedLookup(domain: found, state: state)
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

extension FenceError {
    /// The audit result of a request that failed with this error.
    var auditResult: AuditResult { isTimeout ? .timedOut : .failure }
}
