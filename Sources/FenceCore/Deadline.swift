import Synchronization

/// Thrown by `withDeadline` when the deadline passes first.
struct DeadlineExceeded: Error {}

/// Runs `operation` in its own task and returns its result, or throws `DeadlineExceeded` when `deadline`
/// comes first.
///
/// On the deadline, the operation's task is cancelled but not awaited: a blocking call inside it keeps
/// running to its end, and `lateCompletion` then receives its result (for the record). Callers decide what
/// the operation does when cancelled.
func withDeadline<T: Sendable>(
    _ deadline: ContinuousClock.Instant,
    operation: @escaping @Sendable () async throws -> T,
    lateCompletion: @escaping @Sendable (Result<T, any Error>) async -> Void = { _ in }
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withCheckedThrowingContinuation { continuation in
        race.start(continuation)
        let work = Task {
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
        let timer = Task {
            try? await Task.sleep(until: deadline, clock: .continuous)
            guard !Task.isCancelled else { return }
            if race.finish(.failure(DeadlineExceeded())) { work.cancel() }
        }
        race.setTimer(timer)
    }
}

/// Resumes a continuation exactly once, with whichever of work or timer finishes first.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var timer: Task<Void, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Stores the timer, cancelling it at once if the work already finished.
    func setTimer(_ timer: Task<Void, Never>) {
        let finished = state.withLock { state in
            state.timer = timer
            return state.finished
        }
        if finished { timer.cancel() }
    }

    /// Resumes with `result` if nobody did yet. Returns false if the race was already decided.
    func finish(_ result: Result<T, any Error>) -> Bool {
        let (continuation, timer) = state.withLock { state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            defer { state.continuation = nil }
            return (state.continuation, state.timer)
        }
        guard let continuation else { return false }
        timer?.cancel()
        continuation.resume(with: result)
        return true
    }
}
