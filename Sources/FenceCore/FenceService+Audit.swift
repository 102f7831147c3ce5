import FoundationEssentials
import Logging
import Store

/// Writing the audit log: rows of requests that finished before starting, refusals (and their summaries),
/// completions, and what a timed-out operation did later.
extension FenceService {
    /// Records a request this service does not carry out (fence_xvm's `null`, unknown request codes) as a
    /// failure, so that every request a front end answers is in the audit log.
    public func recordUnsupported(action: String, target: String, origin: RequestOrigin, reason: String) async {
        await recordFinished(
            AuditIntent(action: action, target: DomainTarget(target).auditText, origin: origin),
            since: ContinuousClock.now,
            result: .failure,
            error: nil,
            message: reason,
            errorCode: "unsupported"
        )
    }

    /// Records a front end's read once it has finished: a row of its own within the read limits
    /// (`Configuration.readsPerClientPerMinute`, `readsPerMinute`), else counted for its requester's summary
    /// row. A read is answered even if its row cannot be written (the failure is logged).
    func recordRead(
        _ intent: AuditIntent,
        since started: ContinuousClock.Instant,
        result: AuditResult,
        error: FenceError?,
        message: String?,
        powerState: PowerState? = nil
    ) async {
        let (admitted, ended) = admitRead(intent, result: result, reason: message ?? result.rawValue)
        if let ended { await recordSummary(ended, of: reads) }
        if admitted {
            await recordFinished(
                intent,
                since: started,
                result: result,
                error: error,
                message: message,
                powerState: powerState
            )
        } else {
            metrics.operationRejected(action: intent.action, result: result.rawValue, source: intent.source)
        }
    }

    /// Whether the row of a status that was carried out (and counted) is written, within the read limits as
    /// `recordRead` keeps them; if not, it is counted for its requester's summary row. Synchronous, for
    /// `statusAtOnce`: a summary that this request's window ended is written by a task of its own.
    func admitsStatusRow(_ intent: AuditIntent) -> Bool {
        let (admitted, ended) = admitRead(intent, result: .success, reason: AuditResult.success.rawValue)
        if let ended { Task { await self.recordSummary(ended, of: self.reads) } }
        return admitted
    }

    /// The read limits' decision for one read: whether it gets a row of its own (else it is counted, and its
    /// requester's summary row scheduled), and the summary of a window it ended, to be written by the caller.
    private func admitRead(
        _ intent: AuditIntent,
        result: AuditResult,
        reason: String
    ) -> (admitted: Bool, ended: AuditRowLimiter.Summary?) {
        let client = "\(intent.source) \(intent.requester ?? intent.clientAddress ?? "-")"
        let (decision, ended) = reads.admit(intent, result: result, reason: reason, client: client)
        switch decision {
        case .record:
            return (true, ended)
        case .count(let key, let summaryDue, let window):
            if let summaryDue { scheduleSummary(of: reads, client: key, window: window, at: summaryDue) }
            return (false, ended)
        }
    }

    /// Records the one row of a request that changed nothing (a read, or one this service does not carry
    /// out), once it has finished: with the store's next commit, without waiting for it (see
    /// `AuditStore.recordEventually`: a crash loses at most the rows of the last commit interval).
    func recordFinished(
        _ intent: AuditIntent,
        since started: ContinuousClock.Instant,
        result: AuditResult,
        error: FenceError?,
        message: String?,
        powerState: PowerState? = nil,
        errorCode: String? = nil
    ) async {
        let elapsed = ContinuousClock.now - started
        metrics.operationRejected(action: intent.action, result: result.rawValue, source: intent.source)
        guard !sparesRow(.read) else { return }
        await store.recordEventually(
            intent,
            AuditCompletion(
                result: result,
                powerState: powerState?.rawValue,
                errorCode: errorCode ?? error?.code,
                message: message,
                finishedAt: intent.requestedAt.addingTimeInterval(elapsed.seconds)
            )
        )
    }

    /// Rows that `sparesRow` may leave unwritten.
    enum SparedRow: String {
        case read, refusal, summary
    }

    /// Whether a row of a request that changed nothing (a read, a refusal of a sender without valid
    /// credentials, a summary of either) is left unwritten: while the audit log's filesystem is nearly full and
    /// fences use the space kept for them (`AuditStore.reserveInUse`), such rows are only counted
    /// (`fencegate_audit_rows_spared_total`), so that the space goes to fences. A fence's own rows are always
    /// written, and so are refusals of authenticated requests: a refusal that hides a domain costs what a
    /// request for an unknown domain costs, whose failure is written too.
    func sparesRow(_ row: SparedRow) -> Bool {
        guard store.reserveInUse else { return false }
        metrics.auditRowSpared(kind: row.rawValue)
        return true
    }

    // MARK: - Refusals

    /// Records a request refused before its sender was authenticated (missing or wrong credentials), with
    /// result `refused`; nothing reaches the hypervisor. Since a peer needs no credentials to be refused, these
    /// refusals are rate-limited per client (`Configuration.refusalsPerClientPerMinute`, `refusalsPerMinute`):
    /// the others are counted and recorded together in one summary row per client and minute.
    /// - Returns: the row's id, or nil if the refusal was counted for a summary or could not be recorded
    ///   (then the failure is logged: the request is refused either way).
    @discardableResult
    func recordRefusal(_ request: FenceRequest, reason: String) async -> Int64? {
        let client =
            "\(request.origin.frontEnd.rawValue) \(request.origin.clientAddress ?? request.origin.requester ?? "-")"
        let (decision, ended) = refusals.admit(AuditIntent(request), result: .refused, reason: reason, client: client)
        if let ended { await recordSummary(ended, of: refusals) }
        switch decision {
        case .count(let key, let summaryDue, let window):
            metrics.operationRejected(
                action: request.action.rawValue,
                result: AuditResult.refused.rawValue,
                source: request.origin.frontEnd.rawValue
            )
            metrics.refusalUnrecorded()
            logger.debug(
                "fence request refused (counted for the summary row)",
                metadata: refusalMetadata(request, reason: reason)
            )
            if let summaryDue { scheduleSummary(of: refusals, client: key, window: window, at: summaryDue) }
            return nil
        case .record:
            if sparesRow(.refusal) {
                metrics.operationRejected(
                    action: request.action.rawValue,
                    result: AuditResult.refused.rawValue,
                    source: request.origin.frontEnd.rawValue
                )
                logger.notice(
                    "fence request refused (not recorded: fences use the space kept for them)",
                    metadata: refusalMetadata(request, reason: reason)
                )
                return nil
            }
            return await writeRefusal(request, reason: reason)
        }
    }

    /// Writes the refusal's row (always: the sender is authenticated, or this one is within its limits).
    @discardableResult
    func writeRefusal(_ request: FenceRequest, reason: String) async -> Int64? {
        metrics.operationRejected(
            action: request.action.rawValue,
            result: AuditResult.refused.rawValue,
            source: request.origin.frontEnd.rawValue
        )
        var metadata = refusalMetadata(request, reason: reason)
        let intent = AuditIntent(request)
        do {
            let id = try await store.record(
                intent,
                AuditCompletion(
                    result: .refused,
                    powerState: nil,
                    errorCode: "refused",
                    message: reason,
                    finishedAt: Date()
                )
            )
            metadata["audit.id"] = "\(id)"
            logger.notice("fence request refused", metadata: metadata)
            return id
        } catch {
            metadata["error"] = "\(error)"
            logger.error(
                "fence request refused, and the refusal could not be recorded in the audit log",
                metadata: metadata
            )
            return nil
        }
    }

    func refusalMetadata(_ request: FenceRequest, reason: String) -> Logger.Metadata {
        [
            "fence.action": "\(request.action.rawValue)", "fence.target": "\(request.target)",
            "fence.origin": "\(request.origin.frontEnd.rawValue)", "fence.reason": "\(reason)",
            "peer.address": "\(request.origin.clientAddress ?? "-")",
        ]
    }

    /// Writes the summary rows of every client's refusals and reads that are still only counted, and the
    /// rows of reads that wait for a commit (at shutdown, so that none is lost).
    public func recordPendingRefusals() async {
        for summary in refusals.takeAllSummaries() { await recordSummary(summary, of: refusals) }
        for summary in reads.takeAllSummaries() { await recordSummary(summary, of: reads) }
        await store.commitDeferredRows()
    }

    /// Writes the client's summary row when its window ends (if it is still to be written then).
    func scheduleSummary(
        of limiter: AuditRowLimiter,
        client: String,
        window: ContinuousClock.Instant,
        at due: ContinuousClock.Instant
    ) {
        _ = DeadlineScheduler.shared.schedule(at: due) { [self] in
            guard let summary = limiter.takeSummary(client: client, window: window) else { return }
            Task { await recordSummary(summary, of: limiter) }
        }
    }

    /// The row that accounts for a client's refusals, or reads, that did not get rows of their own.
    func recordSummary(_ summary: AuditRowLimiter.Summary, of limiter: AuditRowLimiter) async {
        let kind = limiter.kind
        let last = summary.intent
        let limits = limiter.limits
        let message =
            "\(summary.count) more \(kind)\(summary.count == 1 ? "" : "s") from \(summary.client) between "
            + "\(RFC3339.format(summary.first)) and \(RFC3339.format(summary.last)) not recorded one by one "
            + "(at most \(limits.perClient) rows per client and \(limits.overall) in all per \(limits.window.fenceSeconds)); "
            + "the last: \(last.action) of '\(last.target)': \(summary.reason)"
        var intent = last
        intent.requestedAt = summary.first
        if sparesRow(.summary) {
            logger.notice(
                "\(kind)s summarized (not recorded: fences use the space kept for them)",
                metadata: ["fence.count": "\(summary.count)", "peer.address": "\(summary.client)"]
            )
            return
        }
        do {
            let id = try await store.record(
                intent,
                AuditCompletion(
                    result: summary.result,
                    powerState: nil,
                    errorCode: limiter.summaryErrorCode,
                    message: message,
                    finishedAt: summary.last
                )
            )
            logger.notice(
                "\(kind)s summarized",
                metadata: ["audit.id": "\(id)", "fence.count": "\(summary.count)", "peer.address": "\(summary.client)"]
            )
        } catch {
            logger.error(
                "could not record a summary of \(kind)s",
                metadata: ["error": "\(error)", "fence.count": "\(summary.count)"]
            )
        }
    }

    /// A request that failed before its intent row: one finished row, best effort (the failure is thrown anyway).
    func recordUnstarted(_ intent: AuditIntent, _ failure: FenceError, logger: Logger) async {
        let completion = AuditCompletion(
            result: failure.isTimeout ? .timedOut : .failure,
            powerState: nil,
            errorCode: failure.code,
            message: failure.description,
            finishedAt: Date()
        )
        do {
            let id = try await store.record(intent, completion)
            logger.notice(
                "fence request failed before it started",
                metadata: ["audit.id": "\(id)", "error": "\(failure)"]
            )
        } catch {
            logger.error(
                "could not record a failed request in the audit log",
                metadata: ["error": "\(error)", "fence.failure": "\(failure)"]
            )
        }
    }

    /// Completes a row, retrying a few times: the operation has happened, so its result must not be lost.
    func complete(_ id: Int64, _ completion: AuditCompletion, logger: Logger) async {
        for attempt in 1...max(1, configuration.completionAttempts) {
            do {
                try await store.complete(id, completion)
                return
            } catch {
                logger.error(
                    "could not complete the audit row",
                    metadata: ["error": "\(error)", "audit.attempt": "\(attempt)"]
                )
                try? await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    /// After a timeout, the abandoned action may still finish: note how, so the record tells the truth.
    func recordLateCompletion(_ id: Int64, _ late: Result<Execution, any Error>, logger: Logger) async {
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
