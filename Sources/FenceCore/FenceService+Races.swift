import Foundation
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

    /// How far `sendingDomain` looks.
    enum RequesterSearch {
        /// The hypervisor too: a guest's address among the running domains' (a listing, then each one's
        /// addresses), a name or UUID looked up. A listing waits for every domain libvirt holds (one being
        /// destroyed, until its process is dead).
        case hypervisor
        /// Only what the ledger knows of the domains being fenced or fenced lately (their names, UUIDs, and
        /// addresses from their fence's start): enough for the rule, which refuses those alone. Never asks
        /// the hypervisor.
        case racingDomains
    }

    /// The domain that sent `request`, if the front end told how to know it and it can be found: the domain
    /// a token names; or the one whose address the guest's is, from `FenceRaceRules.requesters`, else a
    /// domain being fenced or fenced lately that had it when its fence began, else (`search` allowing) the
    /// running domain that has it, if exactly one does. A named domain being fenced or fenced lately is known
    /// without asking the hypervisor. Nil if unknown, or if the hypervisor did not tell within the rules'
    /// `lookupTimeout`.
    func sendingDomain(
        of request: FenceRequest,
        search: RequesterSearch = .hypervisor,
        deadline: ContinuousClock.Instant
    ) async -> DomainInfo? {
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
            } else if let fenced = ledger.fencedDomain(withAddress: address) {
                // Off by now, or about to be: the hypervisor may no longer report its addresses.
                return fenced
            } else if search == .racingDomains {
                return nil
            } else {
                return await runningDomain(withAddress: address, action: request.action, deadline: bound)
            }
        }
        if let router {
            // Cluster mode: the domain is found wherever it runs.
            guard case .found(let located) = router.locate(target) else { return nil }
            return located.domain
        }
        if let racing = ledger.racingDomain(target, window: rules.window) { return racing }
        guard search == .hypervisor else { return nil }
        return try? await blocking(action: request.action, target: target.text, deadline: bound) { [hypervisor] in
            try hypervisor.domain(target)
        }
    }

    /// The one running domain that has `address` (as the hypervisor knows its addresses); nil if none or
    /// several do, or if the hypervisor did not tell by `deadline`.
    private func runningDomain(
        withAddress address: String,
        action: FenceAction,
        deadline: ContinuousClock.Instant
    ) async -> DomainInfo? {
        let canonical = canonicalAddress(address)
        do {
            return try await blocking(action: action, target: address, deadline: deadline) { [hypervisor] in
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
    /// fenced it. A request from a domain other than a preferred one, to fence a preferred one, first waits
    /// the grace period, so that a race between them is decided for the preferred one. The requester is
    /// looked up only when it matters: when a domain is being fenced or was fenced lately, or for priority.
    func settleRace(
        _ request: FenceRequest,
        target: DomainInfo,
        operationID: Int64,
        deadline: ContinuousClock.Instant
    ) async -> (requester: String, operation: Int64)? {
        let rules = configuration.races
        var winner: (requester: String, operation: Int64)?
        if rules.prefers(target), let requester = await sendingDomain(of: request, deadline: deadline),
            requester.uuid != target.uuid, !rules.prefers(requester)
        {
            let wait = min(rules.grace, ContinuousClock.now.duration(to: deadline))
            if wait > .zero { try? await Task.sleep(for: wait) }
            if let operation = ledger.claim(
                target: target,
                by: operationID,
                requester: requester.uuid,
                window: rules.window
            ) {
                winner = (requester.name, operation)
            }
        } else if !ledger.claimIfQuiet(target: target, by: operationID, window: rules.window) {
            // Only a domain being fenced or fenced lately can lose: the ledger knows those.
            let requester = await sendingDomain(of: request, search: .racingDomains, deadline: deadline)
            if let operation = ledger.claim(
                target: target,
                by: operationID,
                requester: requester?.uuid,
                window: rules.window
            ) {
                winner = (requester?.name ?? "?", operation)
            }
        }
        guard winner == nil, rules.recordsGuestAddresses else { return winner }
        // The target's addresses while it still runs (nothing has been done to it yet), so that a request it
        // sends before it dies (a guest's, known by its address) is known as its. Bookkeeping: the fence does
        // not wait for it longer than the rules' lookup timeout.
        let bound = min(deadline, .now + rules.lookupTimeout)
        let addresses =
            (try? await blocking(action: request.action, target: target.name, deadline: bound) { [hypervisor] in
                try hypervisor.addresses(ofDomain: target.uuid)
            }) ?? []
        ledger.record(addresses: addresses, of: target)
        return nil
    }
}
