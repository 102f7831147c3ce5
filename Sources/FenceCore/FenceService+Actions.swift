import FoundationEssentials
import Logging

/// What each action does to a domain, with fence_virtd's libvirt semantics, and the hypervisor calls under it.
extension FenceService {
    // MARK: - Actions, with fence_virtd's libvirt semantics

    /// What an action did: the domain afterwards, and a remark.
    struct Execution: Sendable {
        var domain: DomainInfo
        var note: String?
    }

    func execute(_ action: FenceAction, on domain: DomainInfo) async throws -> Execution {
        guard action == .reboot else {
            // Hypervisor calls only, with nothing to wait for between them: one job on the pool.
            return try await hypervisorCall { [self] _ in try executeAtOnce(action, on: domain) }
        }
        // Re-read: the state seen at lookup may be stale after waiting for the lock.
        guard let state = try await hypervisorCall({ try $0.state(ofDomain: domain.uuid) }) else {
            throw FenceError.domainNotFound(target: domain.name)
        }
        return try await reboot(domain, state: state)
    }

    /// Every action but `reboot` (which waits between its calls), as blocking calls on this thread: call it
    /// on the hypervisor pool.
    private func executeAtOnce(_ action: FenceAction, on domain: DomainInfo) throws -> Execution {
        // Re-read: the state seen at lookup may be stale after waiting for the lock.
        guard let state = try hypervisor.state(ofDomain: domain.uuid) else {
            throw FenceError.domainNotFound(target: domain.name)
        }
        switch action {
        case .status:
            return Execution(domain: domain.with(state: state), note: nil)
        case .off:
            if state == .shutOff { return Execution(domain: domain.with(state: state), note: "already off") }
            try destroyNow(domain)
            return Execution(domain: try refreshedNow(domain), note: nil)
        case .on:
            if state != .shutOff { return Execution(domain: domain.with(state: state), note: "already on") }
            do {
                try hypervisor.start(domain: domain.uuid)
            } catch {
                // Someone else may have started it meanwhile; running is what was asked.
                guard try hypervisor.state(ofDomain: domain.uuid) != .shutOff else { throw error }
            }
            return Execution(domain: try refreshedNow(domain), note: nil)
        case .shutdown, .gracefulReboot, .nmi:
            return try ask(action, domain, state: state)
        case .reboot:
            preconditionFailure("reboot waits between its hypervisor calls: use execute(_:on:)")
        }
    }

    /// The requests a guest acts on itself: asked, not waited for (a guest may take minutes, or ignore them).
    private func ask(_ action: FenceAction, _ domain: DomainInfo, state: DomainState) throws -> Execution {
        guard state != .shutOff else {
            if action == .shutdown { return Execution(domain: domain.with(state: state), note: "already off") }
            throw FenceError.notRunning(action: action, target: domain.name)
        }
        let note: String
        switch action {
        case .shutdown:
            try hypervisor.shutdown(domain: domain.uuid)
            note = "shutdown requested; the guest powers off when its OS does"
        case .gracefulReboot:
            try hypervisor.reboot(domain: domain.uuid)
            note = "restart requested; the guest restarts when its OS does"
        default:
            try hypervisor.injectNMI(domain: domain.uuid)
            note = "NMI injected"
        }
        return Execution(domain: try refreshedNow(domain), note: note)
    }

    /// Destroys the domain (blocking); an error is forgiven if the domain is off (or gone) anyway.
    private func destroyNow(_ domain: DomainInfo) throws {
        do {
            try hypervisor.destroy(domain: domain.uuid)
        } catch {
            let state = try hypervisor.state(ofDomain: domain.uuid)
            guard state == nil || state == .shutOff else { throw error }
        }
    }

    /// The domain with its current state (blocking); `.shutOff` if it no longer exists.
    private func refreshedNow(_ domain: DomainInfo) throws -> DomainInfo {
        domain.with(state: try hypervisor.state(ofDomain: domain.uuid) ?? .shutOff)
    }

    /// Force off, wait until off, start again. A domain that was off stays off and reports success;
    /// a failed restart is reported in the note, and the result is still success (the domain is fenced).
    func reboot(_ domain: DomainInfo, state: DomainState) async throws -> Execution {
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
                metadata: ["fence.domain": "\(domain.name)", "error": "\(reason)"]
            )
            let after = (try? await refreshed(domain)) ?? domain.with(state: .shutOff)
            return Execution(domain: after, note: "fenced (off), but restart failed: \(reason)")
        }
        return Execution(domain: try await refreshed(domain), note: nil)
    }

    /// Destroys the domain on the pool; an error is forgiven if the domain is off (or gone) anyway.
    func destroy(_ domain: DomainInfo, action: FenceAction) async throws {
        try await hypervisorCall { [self] _ in try destroyNow(domain) }
    }

    func waitUntilOff(_ domain: DomainInfo) async throws {
        let clock = ContinuousClock()
        let limit = clock.now + configuration.shutOffWait
        while true {
            let state = try await hypervisorCall { try $0.state(ofDomain: domain.uuid) }
            if state == nil || state == .shutOff { return }
            guard clock.now < limit else {
                throw FenceError.operationFailed(
                    action: .reboot,
                    target: domain.name,
                    reason:
                        "still \(state?.rawValue ?? "present") \(configuration.shutOffWait.fenceSeconds) after destroy"
                )
            }
            try? await Task.sleep(for: configuration.shutOffPollInterval)
        }
    }

    /// The domain with its current state; `.shutOff` if it no longer exists (a destroyed transient domain).
    func refreshed(_ domain: DomainInfo) async throws -> DomainInfo {
        let state = try await hypervisorCall { try $0.state(ofDomain: domain.uuid) }
        return domain.with(state: state ?? .shutOff)
    }

    // MARK: - Plumbing

    func hypervisorCall<T: Sendable>(_ body: @escaping @Sendable (any Hypervisor) throws -> T) async throws -> T {
        try await pool.run { [hypervisor] in try body(hypervisor) }
    }

    /// Runs a hypervisor read on the pool, bounded by the operation timeout or `deadline`, whichever comes
    /// first. A `status` request's reads, and those `asRead` (a fence's look for its sender), run on the
    /// reads' pool; a fence's own on the fences'.
    func blocking<T: Sendable>(
        action: FenceAction,
        target: String,
        deadline: ContinuousClock.Instant? = nil,
        asRead: Bool = false,
        _ body: @escaping @Sendable () throws -> T
    ) async throws(FenceError) -> T {
        let started = ContinuousClock.now
        let limit = min(started + configuration.operationTimeout, deadline ?? .now + configuration.operationTimeout)
        do {
            return try await (asRead || action == .status ? readPool : pool).run(until: limit, body)
        } catch is DeadlineExceeded {
            throw .timedOut(action: action, target: target, after: started.duration(to: .now))
        } catch {
            let failure = FenceError(mapping: error, action: action, target: target, uri: hypervisor.uri)
            noteIfUnavailable(failure)
            throw failure
        }
    }

    func fenceError(_ error: any Error, _ request: FenceRequest, elapsed: Duration?) -> FenceError {
        if error is DeadlineExceeded || error is CancellationError {
            let after = elapsed ?? (request.timeout ?? configuration.operationTimeout)
            return .timedOut(action: request.action, target: request.target.text, after: after)
        }
        let failure = FenceError(
            mapping: error,
            action: request.action,
            target: request.target.text,
            uri: hypervisor.uri
        )
        noteIfUnavailable(failure)
        return failure
    }

    /// A call that found the hypervisor unreachable tells the health check and the metric at once.
    func noteIfUnavailable(_ failure: FenceError) {
        guard case .hypervisorUnavailable = failure else { return }
        probe.noteUnavailable()
        metrics.hypervisor(up: false)
    }
}
