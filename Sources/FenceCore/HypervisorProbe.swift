import Locking

/// Answers "is the hypervisor reachable?" for health checks, at most one check at a time.
///
/// `/healthz` needs no credentials, so it must not be able to make the service spend a thread and a libvirt
/// connection per request. A recent success may be reused (`maximumAge`; a failure never is, so recovery
/// shows at once, and a call that finds the hypervisor gone forgets the success); callers that arrive while a check runs
/// wait for that one check, each at most until `timeout` after it began; once a check is overdue, callers
/// answer "unavailable" at once, while the check itself goes on (one pool thread) until the hypervisor
/// answers. Waiting callers hold nothing but their continuation, and leave when their time is up.
final class HypervisorProbe: Sendable {
    typealias Outcome = Result<Void, FenceError>

    private struct Waiter {
        let continuation: CheckedContinuation<Outcome, Never>
        let ticket: DeadlineScheduler.Ticket
    }

    private struct State {
        /// The last successful check.
        var last: (at: ContinuousClock.Instant, result: Outcome)?
        /// When the running check began; nil if none runs.
        var runningSince: ContinuousClock.Instant?
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Locked(State())
    private let clock = ContinuousClock()
    private let scheduler: DeadlineScheduler
    let timeout: Duration
    private let check: @Sendable () async -> Outcome

    /// - Parameter check: one real check (a hypervisor call on the blocking pool).
    init(
        timeout: Duration,
        scheduler: DeadlineScheduler = .shared,
        check: @escaping @Sendable () async -> Outcome
    ) {
        self.timeout = timeout
        self.scheduler = scheduler
        self.check = check
    }

    /// The hypervisor's reachability: a result at most `maximumAge` old, the running check's, or a new check's.
    func probe(uri: String, maximumAge: Duration) async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            let now = clock.now
            let expired: Outcome = .failure(
                .hypervisorUnavailable(uri: uri, reason: "no answer within \(timeout.fenceSeconds)")
            )
            // Decided and registered under one lock, so a check that ends meanwhile cannot miss this caller.
            let (answer, startCheck): (Outcome?, Bool) = state.withLock { state in
                if let last = state.last, now - last.at < maximumAge { return (last.result, false) }
                let startCheck = state.runningSince == nil
                let since = state.runningSince ?? now
                guard since + timeout > now else {
                    return (
                        .failure(
                            .hypervisorUnavailable(
                                uri: uri,
                                reason: "no answer for \(since.duration(to: now).fenceSeconds)"
                            )
                        ), false
                    )
                }
                state.runningSince = since
                let id = state.nextWaiter
                state.nextWaiter += 1
                let ticket = scheduler.schedule(at: since + timeout) { [self] in
                    let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                    waiter?.continuation.resume(returning: expired)
                }
                state.waiters[id] = Waiter(continuation: continuation, ticket: ticket)
                return (nil, startCheck)
            }
            if let answer { continuation.resume(returning: answer) }
            if startCheck { Task { await runCheck() } }
        }
    }

    /// True while a check has gone on for `timeout` or longer: the hypervisor does not answer.
    var isOverdue: Bool {
        state.withLock { state in state.runningSince.map { $0 + timeout <= clock.now } ?? false }
    }

    /// Takes note that a call just found the hypervisor unreachable, so health checks check again instead
    /// of answering from an older success.
    func noteUnavailable() {
        state.withLock { $0.last = nil }
    }

    private func runCheck() async {
        let outcome = await check()
        let waiters = state.withLock { state in
            state.last = (try? outcome.get()) != nil ? (clock.now, outcome) : nil
            state.runningSince = nil
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters {
            scheduler.cancel(waiter.ticket)
            waiter.continuation.resume(returning: outcome)
        }
    }
}
