import FoundationEssentials
import Logging
import Store

/// Fence races (see `FenceRaceRules`): which domain sent a request, and whether it lost a race.
extension FenceService {
    // MARK: - Fence races

    /// Completes the row of a fence refused because its requester lost a fence race.
    func completeRefused(_ operationID: Int64, _ failure: FenceError, message: String, logger: Logger) async {
        await complete(
            operationID,
            AuditCompletion(
                result: .refused,
                powerState: nil,
                errorCode: failure.code,
                message: message,
                finishedAt: Date()
            ),
            logger: logger
        )
    }

    /// The domain that sent `request`, if the front end told how to know it and it can be found: the domain
    /// a token names; or the one whose address the guest's is, from `FenceRaceRules.requesters`, else a
    /// domain being fenced or fenced lately that had it when its fence began, else the running domain that
    /// has it, if exactly one does. A named domain being fenced or fenced lately is known without asking the
    /// hypervisor. Nil if unknown, or if the hypervisor did not tell within the rules' `lookupTimeout`.
    /// The hypervisor is asked on the reads' threads: a listing waits for every domain libvirt holds (one
    /// being destroyed, until its process is dead), and must not hold a fence's thread meanwhile.
    func sendingDomain(of request: FenceRequest, deadline: ContinuousClock.Instant) async -> DomainInfo? {
        let rules = configuration.races
        let bound = min(deadline, .now + rules.lookupTimeout)
        let target: DomainTarget
        switch request.origin.sendingDomain {
        case nil:
            return nil
        case .named(let named):
            target = named
        case .address(let address):
            if let configured = rules.configuredDomain(for: address) {
                target = configured
            } else if let fenced = ledger.fencedDomain(withAddress: address, window: rules.window) {
                // Off by now, or about to be: the hypervisor may no longer report its addresses.
                return fenced
            } else {
                return await runningDomain(withAddress: address, deadline: bound)
            }
        }
        if let racing = ledger.racingDomain(target, window: rules.window) { return racing }
        if let router {
            // Cluster mode: the domain is found wherever it runs.
            guard case .found(let located) = router.locate(target) else { return nil }
            return located.domain
        }
        return try? await blocking(action: request.action, target: target.text, deadline: bound, asRead: true) {
            [hypervisor] in try hypervisor.domain(target)
        }
    }

    /// The one running domain that has `address` (as the hypervisor knows its addresses); nil if none or
    /// several do, or if the hypervisor did not tell by `deadline`.
    private func runningDomain(withAddress address: String, deadline: ContinuousClock.Instant) async -> DomainInfo? {
        let canonical = canonicalAddress(address)
        do {
            return try await blocking(action: .status, target: address, deadline: deadline, asRead: true) {
                [hypervisor] in
                let owners = try hypervisor.domains().filter { $0.power == .on }.filter { domain in
                    ((try? hypervisor.addresses(ofDomain: domain.uuid)) ?? []).contains {
                        canonicalAddress($0) == canonical
                    }
                }
                return owners.count == 1 ? owners[0] : nil
            }
        } catch {
            if error.isTimeout {
                logger.notice(
                    "the hypervisor did not tell in time which domain has a requester's address; decided as unknown",
                    metadata: ["fence.requester_address": "\(canonical)"]
                )
            }
            return nil
        }
    }

    /// Marks `target` as being fenced by `operationID`, unless the domain that sent the request is being
    /// fenced or was fenced within the window: then returns that domain's name and the operation that
    /// fenced it. The sender is found in the ledger, in the same step as the mark (`FenceLedger.claim`): only
    /// a domain being fenced or fenced lately can lose, and the ledger knows those. A request from a domain
    /// other than a preferred one, to fence a preferred one, first waits the grace period, so that a race
    /// between them is decided for the preferred one (the sender is then looked for in the hypervisor too).
    func settleRace(
        _ request: FenceRequest,
        target: DomainInfo,
        operationID: Int64,
        deadline: ContinuousClock.Instant
    ) async -> (requester: String, operation: Int64)? {
        let rules = configuration.races
        // The target's addresses while it still runs (nothing has been done to it yet), marked with it, so that
        // a request it sends from then on (a guest's, known by its address) is known as its, even once it is off.
        let addresses =
            rules.recordsGuestAddresses ? await addresses(of: target, for: request.action, deadline: deadline) : []
        var requester: FenceLedger.Requester?
        switch request.origin.sendingDomain {
        case nil: requester = nil
        case .named(let named): requester = .named(named)
        case .address(let address):
            requester = rules.configuredDomain(for: address).map { .named($0) } ?? .address(address)
        }
        if rules.prefers(target), let sender = await sendingDomain(of: request, deadline: deadline),
            sender.uuid != target.uuid, !rules.prefers(sender)
        {
            let wait = min(rules.grace, ContinuousClock.now.duration(to: deadline))
            if wait > .zero { try? await Task.sleep(for: wait) }
            requester = .domain(sender)
        } else if ledger.claimIfQuiet(target: target, addresses: addresses, by: operationID, window: rules.window) {
            return nil
        }
        let loser = ledger.claim(
            target: target,
            addresses: addresses,
            by: operationID,
            requester: requester,
            window: rules.window
        )
        return loser.map { ($0.requester.name, $0.operation) }
    }

    /// `target`'s addresses as the hypervisor knows them; none if it did not tell within the rules' lookup
    /// timeout (bookkeeping: the fence goes on). On the fences' threads: part of the fence, it must not wait
    /// behind reads.
    private func addresses(
        of target: DomainInfo,
        for action: FenceAction,
        deadline: ContinuousClock.Instant
    ) async -> [String] {
        let bound = min(deadline, .now + configuration.races.lookupTimeout)
        return
            (try? await blocking(action: action, target: target.name, deadline: bound) { [hypervisor] in
                try hypervisor.addresses(ofDomain: target.uuid)
            }) ?? []
    }
}
