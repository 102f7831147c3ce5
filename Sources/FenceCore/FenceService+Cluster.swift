import FoundationEssentials
import Logging
import Store

/// Cluster mode: completing the receiving host's audit row of a request that another host executed.
extension FenceService {
    /// Completes the row `operationID` of a request the cluster executed elsewhere (or could not), and
    /// answers as if it ran here.
    func finishRouted(
        _ outcome: RouteOutcome,
        request: FenceRequest,
        domain: DomainInfo,
        operationID: Int64,
        fences: Bool,
        since started: ContinuousClock.Instant,
        logger: Logger
    ) async throws(FenceError) -> FenceOutcome {
        let duration = ContinuousClock.now - started
        let after: DomainInfo
        let message: String
        var logger = logger
        switch outcome {
        case .here:
            preconditionFailure("a request routed here is executed, not finished")
        case .raceLost(let requester, let host):
            let failure = FenceError.requesterFencedInCluster(
                target: request.target.text,
                requester: requester,
                host: host
            )
            if fences { ledger.finish(target: domain.uuid, operation: operationID, fenced: false) }
            metrics.operationFinished(
                action: request.action.rawValue,
                result: AuditResult.refused.rawValue,
                source: request.origin.frontEnd.rawValue,
                duration: duration
            )
            await completeRefused(
                operationID,
                failure,
                message:
                    "refused: requester \(requester) was being fenced, or was fenced moments ago, by a request executed on \(host)",
                logger: logger
            )
            logger.notice(
                "fence request refused: its requester lost a fence race in the cluster",
                metadata: ["fence.requester_domain": "\(requester)", "cluster.host": "\(host)"]
            )
            throw failure
        case .executed(let host, let remoteOperation, let state, let note):
            after = domain.with(state: state)
            message = "executed on \(host) (its operation \(remoteOperation))" + (note.map { "; \($0)" } ?? "")
            logger[metadataKey: "cluster.host"] = "\(host)"
            logger[metadataKey: "cluster.operation"] = "\(remoteOperation)"
        case .hostDown(let host) where [.off, .reboot, .status].contains(request.action):
            // What a fence asks for is already so: the domain is off, with its host.
            after = domain.with(state: .shutOff)
            message = "its host \(host) left the cluster and was confirmed down: the domain is off"
            logger[metadataKey: "cluster.host"] = "\(host)"
        case .hostDown(let host):
            let failure = FenceError.clusterUnavailable(
                target: request.target.text,
                reason: "its host \(host) is down (confirmed by an operator)"
            )
            return try await finishRouted(
                .failed(host: nil, failure),
                request: request,
                domain: domain,
                operationID: operationID,
                fences: fences,
                since: started,
                logger: logger
            )
        case .failed(let host, let failure):
            let result: AuditResult = failure.isTimeout ? .timedOut : .failure
            // A fence whose outcome is unknown may still happen: its domain counts as fenced.
            if fences { ledger.finish(target: domain.uuid, operation: operationID, fenced: result == .timedOut) }
            metrics.operationFinished(
                action: request.action.rawValue,
                result: result.rawValue,
                source: request.origin.frontEnd.rawValue,
                duration: duration
            )
            await complete(
                operationID,
                AuditCompletion(
                    result: result,
                    powerState: nil,
                    errorCode: failure.code,
                    message: (host.map { "on \($0): " } ?? "") + failure.description,
                    finishedAt: Date()
                ),
                logger: logger
            )
            logger.error(
                "fence operation failed in the cluster",
                metadata: ["cluster.host": "\(host ?? "-")", "error": "\(failure)"]
            )
            throw failure
        }
        if fences { ledger.finish(target: domain.uuid, operation: operationID, fenced: true) }
        metrics.operationFinished(
            action: request.action.rawValue,
            result: AuditResult.success.rawValue,
            source: request.origin.frontEnd.rawValue,
            duration: duration
        )
        return await succeeded(
            request,
            operationID,
            domain: after,
            note: message,
            auditMessage: message,
            duration: duration,
            logger: logger
        )
    }
}

extension FenceService {
    /// Completes the row of an operation that succeeded, logs it, and answers it.
    func succeeded(
        _ request: FenceRequest,
        _ operationID: Int64,
        domain: DomainInfo,
        note: String?,
        auditMessage: String?,
        duration: Duration,
        logger: Logger
    ) async -> FenceOutcome {
        await complete(
            operationID,
            AuditCompletion(
                result: .success,
                powerState: domain.power.rawValue,
                errorCode: nil,
                message: auditMessage,
                finishedAt: Date()
            ),
            logger: logger
        )
        logger.notice(
            "fence operation succeeded",
            metadata: ["fence.power": "\(domain.power.rawValue)", "fence.duration": "\(duration)"]
        )
        return FenceOutcome(
            operationID: operationID,
            action: request.action,
            domain: domain,
            power: domain.power,
            duration: duration,
            note: note
        )
    }
}

extension FenceError {
    /// The error another host answered with (its code and description), as this host reports it.
    public init(code: String, message: String, host: String, action: FenceAction, target: String, after: Duration) {
        switch code {
        case "domain_not_found": self = .domainNotFound(target: target)
        case "timed_out": self = .timedOut(action: action, target: target, after: after)
        case "domain_busy": self = .domainBusy(target: target)
        case "not_running": self = .notRunning(action: action, target: target)
        case "hypervisor_unavailable": self = .hypervisorUnavailable(uri: "on \(host)", reason: message)
        case "audit_unavailable": self = .auditUnavailable(reason: "on \(host): \(message)")
        case "refused", "requester_fenced": self = .refused(target: target, reason: "on \(host): \(message)")
        case "cluster_unavailable": self = .clusterUnavailable(target: target, reason: "on \(host): \(message)")
        default: self = .operationFailed(action: action, target: target, reason: "on \(host): \(message)")
        }
    }
}
