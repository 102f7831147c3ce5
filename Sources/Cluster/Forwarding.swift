import FenceCore
import Synchronization

/// This host's requests and call-back claims that wait for the cluster: each is answered exactly once, by
/// the cluster's decision, the executor's reply, the executor leaving, or its deadline, whichever comes first.
final class Forwarding: Sendable {
    /// What this host knows of a request it sent.
    private struct Request {
        let action: FenceAction
        let target: String
        let sent: ContinuousClock.Instant
        /// The executor, once decided (another host).
        var executor: (member: CPGMember, host: String)?

        /// The request's end when its outcome is unknown (its deadline passed, its executor left).
        func timedOut(host: String?) -> RouteOutcome {
            .failed(host: host, .timedOut(action: action, target: target, after: .now - sent))
        }
    }

    private let nextSerial = Atomic<UInt64>(1)
    private let requests = Mutex<[UInt64: Request]>([:])
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

    /// Answers request `serial` (the first answer counts).
    func answer(_ serial: UInt64, _ outcome: RouteOutcome) {
        outcomes.answer(serial, outcome)
    }

    /// The cluster decided that `member`, another host, runs request `serial`.
    func executorDecided(_ serial: UInt64, member: CPGMember, host: String) {
        requests.withLock { $0[serial]?.executor = (member, host) }
    }

    /// Ends request `serial` with `reason` (a `clusterUnavailable`).
    func fail(_ serial: UInt64, reason: String) {
        guard let target = requests.withLock({ $0[serial]?.target }) else { return }
        answer(serial, .failed(host: nil, .clusterUnavailable(target: target, reason: reason)))
    }

    /// The executor's reply.
    func replied(_ reply: ForwardedReply) {
        guard let request = requests.withLock({ $0[reply.serial] }) else { return }
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

    /// This host left the group: every waiting request and claim ends.
    func failAll(reason: String) {
        for (serial, request) in requests.withLock({ $0 }) {
            if let executor = request.executor {
                answer(serial, request.timedOut(host: executor.host))
            } else {
                fail(serial, reason: reason)
            }
        }
        for claim in claims.keys { claims.answer(claim, false) }
    }

    /// Waits for request `serial`'s answer until `deadline`; then it ends as timed out.
    func wait(_ serial: UInt64, until deadline: ContinuousClock.Instant) async -> RouteOutcome {
        defer { requests.withLock { $0[serial] = nil } }
        return await outcomes.wait(serial, until: deadline) { [self] in
            let request = requests.withLock { $0[serial] }
            return request?.timedOut(host: request?.executor?.host)
                ?? .failed(host: nil, .clusterUnavailable(target: "?", reason: "the request was lost"))
        }
    }

    // MARK: - Claims

    /// Registers a claim of this host; false if one for the same key waits already.
    func registerClaim(_ claim: CallbackClaim) -> Bool { claims.open(claim) }

    /// The cluster decided this host's claim.
    func claimDecided(_ claim: CallbackClaim, won: Bool) { claims.answer(claim, won) }

    /// Waits for the claim's decision until `deadline` (then: not won).
    func waitForClaim(_ claim: CallbackClaim, until deadline: ContinuousClock.Instant) async -> Bool {
        await claims.wait(claim, until: deadline) { false }
    }
}
