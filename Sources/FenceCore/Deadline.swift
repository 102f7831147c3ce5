import Locking

/// Thrown by `withDeadline` when the deadline passes first.
struct DeadlineExceeded: Error {}

/// Runs `operation` in its own task and returns its result, or throws `DeadlineExceeded` when `deadline`
/// comes first.
///
/// On the deadline, the operation's task is cancelled but not awaited: a blocking call inside it keeps
/// running to its end, and `lateCompletion` then receives its result (for the record). Callers decide what
/// the operation does when cancelled. If the calling task is cancelled (an enclosing deadline passed), the
/// operation's task is cancelled too, and its result (its `CancellationError`, typically) is returned. The
/// deadline is kept by `DeadlineScheduler`, and forgotten as soon as the operation finishes, so nothing of a
/// request outlives it.
func withDeadline<T: Sendable>(
    _ deadline: ContinuousClock.Instant,
    scheduler: DeadlineScheduler = .shared,
    operation: @escaping @Sendable () async throws -> T,
    lateCompletion: @escaping @Sendable (Result<T, any Error>) async -> Void = { _ in }
) async throws -> T {
    let race = DeadlineRace<T>(scheduler: scheduler)
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation)
            // Started on this thread, up to the operation's first wait (every caller's operation waits at
            // once, for the blocking pool or an actor): one thread hop fewer than a task started elsewhere.
            let work = Task.immediate {
                let result: Result<T, any Error>
                do {
                    result = .success(try await operation())
                } catch {
                    result = .failure(error)
                }
                if !race.finish(result) {
                    await lateCompletion(result)
                }
            }
            race.setWork(work)
            let ticket = scheduler.schedule(at: deadline) {
                if race.finish(.failure(DeadlineExceeded())) { work.cancel() }
            }
            race.setTicket(ticket)
        }
    } onCancel: {
        race.cancelWork()
    }
}

/// Resumes a continuation exactly once, with whichever of work or deadline finishes first.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var ticket: DeadlineScheduler.Ticket?
        var work: Task<Void, Never>?
        var workCancelled = false
        var finished = false
    }

    private let state = Locked(State())
    private let scheduler: DeadlineScheduler

    init(scheduler: DeadlineScheduler) {
        self.scheduler = scheduler
    }

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Stores the work's task, cancelling it at once if the caller was cancelled already.
    func setWork(_ work: Task<Void, Never>) {
        let cancelled = state.withLock { state in
            state.work = work
            return state.workCancelled
        }
        if cancelled { work.cancel() }
    }

    /// The caller was cancelled: so is the work (now, or as soon as it exists).
    func cancelWork() {
        let work = state.withLock { state in
            state.workCancelled = true
            return state.work
        }
        work?.cancel()
    }

    /// Stores the deadline's ticket, cancelling it at once if the work already finished.
    func setTicket(_ ticket: DeadlineScheduler.Ticket) {
        let finished = state.withLock { state in
            state.ticket = ticket
            return state.finished
        }
        if finished { scheduler.cancel(ticket) }
    }

    /// Resumes with `result` if nobody did yet. Returns false if the race was already decided.
    func finish(_ result: Result<T, any Error>) -> Bool {
        let (continuation, ticket) = state.withLock {
            state -> (CheckedContinuation<T, any Error>?, DeadlineScheduler.Ticket?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            defer {
                state.continuation = nil
                state.ticket = nil
                state.work = nil
            }
            return (state.continuation, state.ticket)
        }
        guard let continuation else { return false }
        if let ticket { scheduler.cancel(ticket) }
        continuation.resume(with: result)
        return true
    }
}
