public import FenceCore
import FoundationEssentials
import Locking
import Logging
import Synchronization

/// Cluster mode's requests: every request about a domain that a front end of this host received goes to
/// the group; at its delivery every member decides alike where it runs (`ClusterLedger.placement`); the
/// executor runs it through its fence service and replies; this host answers with that reply.
extension ClusterMembership: ClusterRouter {
    /// The longest an answer may take to come back after the request's own deadline (the executor answers
    /// "timed out" at that deadline; its reply needs a moment to arrive).
    static let replyGrace: Duration = .seconds(2)
    /// The longest a fence_xvm call back claim waits for its delivery.
    static let claimWait: Duration = .seconds(2)

    public func locate(_ target: DomainTarget) -> ClusterLocation {
        let view = self.view
        guard view.local != nil else {
            return .unavailable(reason: "this host is not in the cluster (corosync unreachable)")
        }
        let matches = clusterDomains(of: view.ledger).filter { entry in
            if let uuid = target.uuid { return entry.domain.uuid == uuid }
            return entry.domain.name == target.text
        }
        if matches.count > 1 { return .ambiguous(hosts: matches.map(\.host)) }
        if let match = matches.first { return .found(match) }
        if let reason = view.ledger.unsettledReason { return .unavailable(reason: reason) }
        return .notFound
    }

    public func clusterDomains() -> [ClusterDomain] {
        clusterDomains(of: view.ledger)
    }

    /// Each domain once (by UUID): on the host where it runs, else the first where it is defined, else as a
    /// host that left last reported it.
    private func clusterDomains(of ledger: ClusterLedger) -> [ClusterDomain] {
        var found: [String: ClusterDomain] = [:]
        var order: [String] = []
        for (member, host) in ledger.hosts {
            // While reports are sent again after a join, the last ones name the domains (requests then wait
            // for the new ones before they are placed).
            for reported in ledger.domains[member] ?? ledger.lastReports[member] ?? [] {
                let domain = DomainInfo(reported)
                if let seen = found[domain.uuid] {
                    if seen.domain.power != .on, domain.power == .on {
                        found[domain.uuid] = ClusterDomain(domain: domain, host: host, hostLeft: false)
                    }
                } else {
                    found[domain.uuid] = ClusterDomain(domain: domain, host: host, hostLeft: false)
                    order.append(domain.uuid)
                }
            }
        }
        for host in ledger.departed.keys.sorted() {
            for reported in ledger.departed[host] ?? [] where found[reported.uuid] == nil {
                found[reported.uuid] = ClusterDomain(domain: DomainInfo(reported), host: host, hostLeft: true)
                order.append(reported.uuid)
            }
        }
        return order.map { found[$0]! }.sorted { ($0.domain.name, $0.domain.uuid) < ($1.domain.name, $1.domain.uuid) }
    }

    public func route(_ request: RoutedRequest, deadline: ContinuousClock.Instant) async -> RouteOutcome {
        guard let group = joined.withLock({ $0 }) else {
            return .failed(
                host: nil,
                .clusterUnavailable(
                    target: request.target,
                    reason: "this host is not in the cluster (corosync unreachable); nothing was done"
                )
            )
        }
        let sent = ContinuousClock.now
        let serial = forwarding.register(action: request.action, target: request.target)
        let remaining = max(Duration.zero, deadline - .now)
        let (seconds, attoseconds) = remaining.components
        let milliseconds = min(Int64(UInt32.max), seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        let message = ForwardedRequest(
            serial: serial,
            action: request.action.rawValue,
            domainUUID: request.domain.uuid,
            domainName: request.domain.name,
            target: request.target,
            frontEnd: request.origin.frontEnd.rawValue,
            requester: request.origin.requester ?? "",
            clientAddress: request.origin.clientAddress ?? "",
            requestID: request.origin.requestID ?? "",
            receivedOn: hello.withLock { $0.hostName },
            timeoutMilliseconds: UInt32(milliseconds),
            waitForDomain: request.waitForDomain,
            requesterUUID: request.requester?.uuid ?? "",
            requesterName: request.requester?.name ?? "",
            raceWindowMilliseconds: UInt32(clamping: request.raceWindow.components.seconds * 1000),
            claimKey: request.origin.claimKey ?? []
        )
        do {
            try await group.send(ClusterMessage.request(message).encoded, deadline: deadline)
            forwarding.sent(serial)
        } catch {
            forwarding.fail(serial, reason: "could not send the request to the cluster (\(error)); nothing was done")
        }
        var answered = await forwarding.wait(serial, until: deadline) != nil
        if !answered, forwarding.executor(of: serial) == nil {
            // Not decided by its deadline (the membership did not settle): withdrawn, it is dropped by every
            // member alike, unless they decided it before the withdrawal's delivery; either way this host
            // learns which at that delivery.
            let withdrawal = ClusterMessage.withdraw(serial: serial).encoded
            if (try? await group.send(withdrawal, deadline: .now + Self.replyGrace)) != nil {
                answered = await forwarding.wait(serial, until: .now + Self.replyGrace) != nil
            }
        }
        if !answered {
            // Placed on another host: its answer has a moment more to arrive.
            _ = await forwarding.wait(serial, until: deadline + Self.replyGrace)
        }
        let outcome = forwarding.finish(serial)
        metrics?.forwarded(result: outcome.resultName, duration: .now - sent)
        return outcome
    }

    public func claimCallback(_ key: [UInt8], requester: DomainInfo?, deadline: ContinuousClock.Instant) async -> Bool {
        // Not in the cluster: this host answers (a request about a domain then fails at once, saying why).
        guard let group = joined.withLock({ $0 }) else { return true }
        let claim = CallbackClaim(key: key)
        if let requester {
            // Before the claim: whichever host wins the call back, every member knows who asked.
            let found = ClaimRequester(claim: claim, requesterUUID: requester.uuid, requesterName: requester.name)
            try? await group.send(
                ClusterMessage.claimRequester(found).encoded,
                deadline: min(deadline, .now + Self.claimWait)
            )
        }
        guard forwarding.registerClaim(claim) else { return false }
        let limit = min(deadline, .now + Self.claimWait)
        do {
            try await group.send(ClusterMessage.claim(claim).encoded, deadline: limit)
        } catch {
            // Not sent: another host may claim it; this one does not call back.
            _ = forwarding.claimDecided(claim, won: false)
        }
        return await forwarding.waitForClaim(claim, until: limit)
    }

    public func finished(ticket: UInt64, fenced: Bool) async {
        guard let group = joined.withLock({ $0 }) else { return }
        try? await group.send(ClusterMessage.done(serial: ticket, fenced: fenced).encoded, deadline: .now + .seconds(5))
    }

    public func releaseCallback(_ key: [UInt8]) async {
        guard let group = joined.withLock({ $0 }) else { return }
        try? await group.send(ClusterMessage.release(CallbackClaim(key: key)).encoded, deadline: .now + .seconds(5))
    }

    /// Acts on requests decided at a delivery: answers this host's own, executes those placed here.
    func act(
        on decisions: [ClusterLedger.Decision],
        group: CPGGroup,
        tasks: inout DiscardingTaskGroup
    ) {
        let (local, quorate) = current.withLock { ($0.local, $0.quorate) }
        for decision in decisions {
            let serial = decision.request.serial
            let mine = decision.from == local
            switch decision.placement {
            case .member(let member, _) where member == local && decision.requiresQuorum && quorate != true:
                // It relies on a host confirmed down: only a quorate partition acts on that.
                let reason =
                    "it relies on an operator's confirmation that a host is down, and this partition is not "
                    + "quorate; nothing was done"
                if mine {
                    forwarding.fail(serial, reason: reason)
                } else {
                    let failure = ForwardedReply.Outcome.failure(code: "cluster_unavailable", message: reason)
                    tasks.addTask { await self.reply(failure, to: decision.request, from: decision.from, group: group) }
                }
            case .member(let member, let host):
                if member == local {
                    if mine {
                        forwarding.answer(serial, .here(ticket: serial))
                    } else {
                        let waited = decision.waited
                        tasks.addTask {
                            await self.execute(decision.request, from: decision.from, waited: waited, group: group)
                        }
                    }
                } else if mine {
                    forwarding.executorDecided(serial, member: member, host: host)
                }
            case .unsettled(let reason), .unavailable(let reason):
                if mine { forwarding.fail(serial, reason: reason + "; nothing was done") }
            case .confirmedDown(let host):
                guard mine else { continue }
                if quorate == true {
                    forwarding.answer(serial, .hostDown(host: host))
                } else {
                    forwarding.fail(
                        serial,
                        reason: "its host \(host) was confirmed down, but this host's partition is not quorate "
                            + "(it may be the minority); nothing was done"
                    )
                }
            case .raceLost(let requester, let host):
                if mine { forwarding.answer(serial, .raceLost(requester: requester, host: host)) }
            case .notFound:
                if mine {
                    forwarding.answer(serial, .failed(host: nil, .domainNotFound(target: decision.request.target)))
                }
            }
        }
    }

    /// Executes a request another host received, through this host's fence service, and replies.
    private func execute(
        _ request: ForwardedRequest,
        from receiver: CPGMember,
        waited: Duration,
        group: CPGGroup
    ) async {
        let outcome: ForwardedReply.Outcome
        // The time it waited to be decided is the receiver's too: what is left of it, if anything.
        let timeLeft = Duration.milliseconds(Int64(request.timeoutMilliseconds)) - waited
        if timeLeft <= .zero {
            outcome = .failure(
                code: "timed_out",
                message: "its time ran out while the cluster's membership settled; nothing was done"
            )
        } else if let service, let action = FenceAction(rawValue: request.action),
            let frontEnd = FrontEnd(rawValue: request.frontEnd)
        {
            let origin = RequestOrigin(
                frontEnd: frontEnd,
                requester: request.requester.isEmpty ? nil : request.requester,
                clientAddress: request.clientAddress.isEmpty ? nil : request.clientAddress,
                requestID: request.requestID.isEmpty ? nil : request.requestID,
                receivedOn: request.receivedOn
            )
            let fenceRequest = FenceRequest(
                action: action,
                target: DomainTarget(request.domainUUID),
                origin: origin,
                timeout: timeLeft,
                waitForDomain: request.waitForDomain
            )
            do {
                let done = try await service.perform(fenceRequest)
                outcome = .success(
                    operationID: done.operationID,
                    state: done.domain.state.rawValue,
                    note: done.note ?? ""
                )
            } catch {
                outcome = .failure(code: error.code, message: error.description)
            }
        } else {
            outcome = .failure(code: "operation_failed", message: "this host cannot execute '\(request.action)'")
        }
        await reply(outcome, to: request, from: receiver, group: group)
    }

    /// Sends the answer to a request another host received.
    private func reply(
        _ outcome: ForwardedReply.Outcome,
        to request: ForwardedRequest,
        from receiver: CPGMember,
        group: CPGGroup
    ) async {
        switch outcome {
        case .success: metrics?.executed(result: "success")
        case .failure(let code, _): metrics?.executed(result: code == "timed_out" ? "timed_out" : "failure")
        }
        let executedOn = hello.withLock { $0.hostName }
        let reply = ForwardedReply(receiver: receiver, serial: request.serial, executedOn: executedOn, outcome: outcome)
        do {
            try await group.send(ClusterMessage.reply(reply).encoded, deadline: .now + .seconds(5))
        } catch {
            logger.error(
                "could not send a forwarded request's answer to the host that received it",
                metadata: ["cluster.member": "\(receiver)", "error": "\(error)"]
            )
        }
    }
}

extension RouteOutcome {
    /// The result's name for metrics: `here` (not forwarded), `success`, `failure` or `timed_out`.
    var resultName: String {
        switch self {
        case .here: "here"
        case .executed, .hostDown: "success"
        case .raceLost: "refused"
        case .failed(_, let error): error.isTimeout ? "timed_out" : "failure"
        }
    }
}

extension DomainInfo {
    /// The domain as a member reported it.
    init(_ reported: DomainReport.Domain) {
        self.init(
            name: reported.name,
            uuid: reported.uuid,
            state: DomainState(rawValue: reported.state) ?? .noState,
            isPersistent: reported.isPersistent
        )
    }
}
