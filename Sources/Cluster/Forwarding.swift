import FenceCore
import Locking
import Synchronization

/// This host's requests and call-back claims that wait for the cluster: each is answered exactly once, by
/// the cluster's decision, the executor's reply, the executor leaving, or its deadline, whichever comes first.
final class Forwarding: Sendable {
    /// What this host knows of a request it sends.
    private struct Request {
        let action: FenceAction
        let target: String
        let sent: ContinuousClock.Instant
        /// True once it was handed to corosync: the cluster may run it.
        var delivered = false
        /// The executor, once decided (another host).
        var executor: (member: CPGMember, host: String)?

        /// The request's end when its outcome is unknown (its deadline passed, its executor left).
        func timedOut(host: String?) -> RouteOutcome {
            .failed(host: host, .timedOut(action: action, target: target, after: .now - sent))
        }
    }

    /// Serials start at a random number: a late answer meant for an earlier process that had the same
    /// node id and pid does not answer a request of this one.
    private let nextSerial = Atomic<UInt64>(UInt64.random(in: 1...(UInt64.max / 2)))
    private let requests = Locked<[UInt64: Request]>([:])
    private let outcomes = Rendezvous<UInt64, RouteOutcome>()
    private let claims = Rendezvous<CallbackClaim, Bool>()

    // MARK: - Requests

    /// A new request's serial.
    func register(action: FenceAction, target: String) -> UInt64 {
        let serial = nextSerial.add(1, ordering: .relaxed).oldValue
        requests.withLock { $0[serial] = Request(action: action, target: target, sent: .now) }
        _ = outcomes.open(serial)
        return serial
    }

    /// The request was handed to corosync.
    func sent(_ serial: UInt64) {
        requests.withLock { $0[serial]?.delivered = true }
    }

    /// Answers request `serial` (the first answer counts).
    func answer(_ serial: UInt64, _ outcome: RouteOutcome) {
        outcomes.answer(serial, outcome)
    }

    /// The cluster decided that `member`, another host, runs request `serial`.
    func executorDecided(_ serial: UInt64, member: CPGMember, host: String) {
        requests.withLock { $0[serial]?.executor = (member, host) }
    }

    /// The executor decided for request `serial`, if any.
    func executor(of serial: UInt64) -> CPGMember? {
        requests.withLock { $0[serial]?.executor?.member }
    }

    /// Ends request `serial` with `reason` (a `clusterUnavailable`: nothing was done).
    func fail(_ serial: UInt64, reason: String) {
        guard let target = requests.withLock({ $0[serial]?.target }) else { return }
        answer(serial, .failed(host: nil, .clusterUnavailable(target: target, reason: reason)))
    }

    /// An executor's reply, taken only from the member the request was placed on.
    func replied(_ reply: ForwardedReply, from member: CPGMember) {
        guard let request = requests.withLock({ $0[reply.serial] }), request.executor?.member == member else { return }
        switch reply.outcome {
        case .success(let operation, let state, let note):
            let state = DomainState(rawValue: state) ?? .noState
            answer(
                reply.serial,
                .executed(host: reply.executedOn, operationID: operation, state: state, note: note.isEmpty ? nil : note)
            )
        case .failure(let code, let message):
            let error = FenceError(
                code: code,
                message: message,
                host: reply.executedOn,
                action: request.action,
                target: request.target,
                after: .now - request.sent
            )
            answer(reply.serial, .failed(host: reply.executedOn, error))
        }
    }

    /// Members left: requests they were executing end as timed out (the outcome is unknown).
    func executorsLeft(_ members: Set<CPGMember>) {
        let orphans = requests.withLock { requests in
            requests.filter { $0.value.executor.map { members.contains($0.member) } ?? false }
        }
        for (serial, request) in orphans {
            answer(serial, request.timedOut(host: "\(request.executor!.host) (it left the cluster mid-request)"))
        }
    }

    /// This host left the group: every waiting request and claim ends. A request handed to corosync may
    /// still run on another host: it ends as timed out (unknown), not as "nothing was done".
    func failAll(reason: String) {
        for (serial, request) in requests.withLock({ $0 }) {
            if request.delivered {
                answer(serial, request.timedOut(host: request.executor?.host))
            } else {
                fail(serial, reason: reason)
            }
        }
        for claim in claims.keys { claims.answer(claim, false) }
    }

    /// Request `serial`'s answer, waiting until `deadline`; nil if none came by then.
    func wait(_ serial: UInt64, until deadline: ContinuousClock.Instant) async -> RouteOutcome? {
        await outcomes.wait(serial, until: deadline)
    }

    /// Forgets request `serial`: its answer, or, if none came, its end as timed out.
    func finish(_ serial: UInt64) -> RouteOutcome {
        let request = requests.withLock { $0.removeValue(forKey: serial) }
        return outcomes.close(serial) ?? request?.timedOut(host: request?.executor?.host)
            ?? .failed(host: nil, .clusterUnavailable(target: "?", reason: "the request was lost"))
    }

    // MARK: - Claims

    /// Registers a claim of this host; false if one for the same key waits already.
    func registerClaim(_ claim: CallbackClaim) -> Bool { claims.open(claim) }

    /// The cluster decided this host's claim. Returns false if it was won with no one waiting for it any
    /// more: the caller releases it, so that copies of the request are not refused for nothing.
    func claimDecided(_ claim: CallbackClaim, won: Bool) -> Bool {
        claims.answer(claim, won) || !won
    }

    /// Waits for the claim's decision until `deadline` (then: not won, unless the decision came meanwhile).
    func waitForClaim(_ claim: CallbackClaim, until deadline: ContinuousClock.Instant) async -> Bool {
        let won = await claims.wait(claim, until: deadline)
        return claims.close(claim) ?? won ?? false
    }
}
