package import FoundationEssentials
import Locking

/// Threads for blocking C calls (libvirt, socket I/O), so they never occupy Swift's cooperative pool.
///
/// A job runs at once on an idle thread, or on a new one if none is idle, up to `maximumThreads`; beyond
/// that jobs wait in order, at most `maximumQueued` of them (then `run` fails at once with `Saturated`).
/// A waiting job whose caller is cancelled (its deadline passed) leaves the queue without running, so a
/// hung hypervisor holds at most `maximumThreads` threads, however many requests give up on it. Threads
/// that stay idle for `idleTimeout` exit.
package final class BlockingThreadPool: @unchecked Sendable {
    // @unchecked: every stored var is only touched with `condition` locked.

    /// `run` was refused: every thread is busy and the queue is full.
    package struct Saturated: Error, CustomStringConvertible {
        package let pool: String
        package let threads: Int
        package let queued: Int

        package var description: String {
            "all \(threads) \(pool) threads are busy and \(queued) calls wait already"
        }
    }

    private struct Job {
        let id: UInt64
        /// Runs the call and returns what resumes its caller, which the thread runs once the call no longer
        /// counts as one of the pool's.
        let run: @Sendable () -> @Sendable () -> Void
        let abandon: @Sendable (any Error) -> Void
    }

    private let condition = ThreadCondition()
    private var pending: [Job] = []
    private var pendingHead = 0
    private var idle = 0
    private var threads = 0
    private var busy = 0
    /// Callers running a call on their own thread (`runInPlace`): they count against `maximumThreads`.
    private var inPlace = 0
    /// Pool threads that have a job waiting but no share free (calls run in place took them): not idle.
    private var waitingForShare = 0
    private var nextJobID: UInt64 = 0
    private let idleTimeout: TimeInterval
    private let name: String
    /// The most threads this pool runs at once.
    package let maximumThreads: Int
    /// The most jobs that wait for a thread.
    package let maximumQueued: Int
    /// Whether a caller whose task prefers `ResumeOnPoolThread` goes on, once its call has returned, on the
    /// thread that ran it (else on Swift's pool). That rest runs after the call stopped counting as one of the
    /// pool's calls; it must not block (it runs until its task's next suspension).
    private let resumesCallersHere: Bool
    /// Starts a thread: `DetachedThread.start`, or in tests a stand-in for a system that refuses threads.
    package typealias ThreadStarter =
        @Sendable (String, @escaping @Sendable () -> Void) throws(DetachedThread.StartFailure) -> Void
    private let startThread: ThreadStarter

    package init(
        name: String,
        maximumThreads: Int,
        maximumQueued: Int = 1024,
        idleTimeout: TimeInterval = 30,
        resumesCallersHere: Bool = false,
        startThread: @escaping ThreadStarter = { name, body throws(DetachedThread.StartFailure) in
            try DetachedThread.start(name: name, body)
        }
    ) {
        self.name = name
        self.maximumThreads = max(1, maximumThreads)
        self.maximumQueued = max(0, maximumQueued)
        self.idleTimeout = idleTimeout
        self.resumesCallersHere = resumesCallersHere
        self.startThread = startThread
    }

    /// Pool threads that have a job to run and wait for a share that calls run in place hold; for tests.
    package var threadsWaitingForShare: Int {
        condition.lock()
        defer { condition.unlock() }
        return waitingForShare
    }

    /// Threads alive now, and how many of them run a job; for tests and metrics.
    package var census: (threads: Int, busy: Int, queued: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (threads, busy + inPlace, pending.count - pendingHead)
    }

    /// Runs `body` on the calling thread as one of this pool's calls, if a share is free and no job waits
    /// for one; otherwise returns nil without running it. While it runs it counts against `maximumThreads`
    /// (and in `census` as busy), so the bound on concurrent calls holds. For a caller already on a thread
    /// that may block (another pool's), which saves the hop here and back; it has no deadline.
    package func runInPlace<T>(_ body: () throws -> T) rethrows -> T? {
        condition.lock()
        guard busy + inPlace < maximumThreads, pendingHead == pending.count else {
            condition.unlock()
            return nil
        }
        inPlace += 1
        condition.unlock()
        defer {
            condition.lock()
            inPlace -= 1
            // A share is free: any waiting thread (idle, or waiting for a share) can take the next job.
            let wake = pendingHead < pending.count
            condition.unlock()
            if wake { condition.signal() }
        }
        return try body()
    }

    /// Runs `body` on a pool thread and returns its result.
    /// - Throws: what `body` throws; `Saturated` if the queue is full; `CancellationError` if the calling
    ///   task is cancelled before a thread took the job (then `body` never runs). Once running, `body` runs
    ///   to its end whatever happens to the caller.
    package func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let id = takeJobID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                submit(
                    Job(
                        id: id,
                        run: {
                            let result = Result(catching: body)
                            return { continuation.resume(with: result) }
                        },
                        abandon: { continuation.resume(throwing: $0) }
                    )
                )
            }
        } onCancel: {
            abandon(id)
        }
    }

    /// Runs `body` on a pool thread, as `run`, but waits at most until `deadline`: then throws
    /// `DeadlineExceeded`, and a job still queued leaves the queue (a running one runs to its end, its result
    /// dropped). One hop to the pool and one back, where `withDeadline` around `run` adds a task of its own.
    package func run<T: Sendable>(
        until deadline: ContinuousClock.Instant,
        scheduler: DeadlineScheduler = .shared,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let id = takeJobID()
        let answer = AnswerOnce<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                answer.start(continuation)
                let ticket = scheduler.schedule(at: deadline) { [self] in
                    // Out of the queue before the caller hears of it (a job a thread took runs to its end).
                    guard let caller = answer.claim() else { return }
                    abandon(id)
                    caller.resume(throwing: DeadlineExceeded())
                }
                submit(
                    Job(
                        id: id,
                        run: {
                            let result = Result(catching: body)
                            scheduler.cancel(ticket)
                            return { answer.resume(with: result) }
                        },
                        abandon: { error in
                            scheduler.cancel(ticket)
                            answer.resume(with: .failure(error))
                        }
                    )
                )
            }
        } onCancel: {
            abandon(id)
        }
    }

    private func takeJobID() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        nextJobID += 1
        return nextJobID
    }

    /// Queues `job`, unless its caller is cancelled already. Called on the caller's task: its cancellation
    /// flag is set before its cancellation handler (`abandon`) runs, and that handler waits for the lock held
    /// here, so a cancellation is seen either here or by `abandon`, never by neither.
    private func submit(_ job: Job) {
        condition.lock()
        if Task.isCancelled {
            condition.unlock()
            job.abandon(CancellationError())
            return
        }
        let queued = pending.count - pendingHead
        if idle == 0, threads >= maximumThreads, queued >= maximumQueued {
            let refusal = Saturated(pool: name, threads: threads, queued: queued)
            condition.unlock()
            job.abandon(refusal)
            return
        }
        pending.append(job)
        let spawn = queued + 1 > idle && threads < maximumThreads
        if spawn { threads += 1 }
        condition.unlock()
        // Signalled after unlocking, so that the woken thread does not wait at once for the lock held here
        // (it finds the job queued whenever it gets the lock: waiting threads loop on the queue).
        if !spawn { condition.signal() }
        if spawn {
            do {
                try startThread(name) { [self] in work() }
            } catch {
                threadDidNotStart(for: job.id, error)
            }
        }
    }

    /// The thread started for `id` was refused: it no longer counts, and its job, if no other thread took it
    /// meanwhile, fails with the reason (a caller gets an error at once rather than a job no thread runs). With
    /// no thread left at all, every queued job fails so: the jobs queued meanwhile counted on that thread too.
    private func threadDidNotStart(for id: UInt64, _ failure: DetachedThread.StartFailure) {
        condition.lock()
        threads -= 1
        var failed: [Job] = []
        if threads == 0 {
            failed = Array(pending[pendingHead...])
            pending.removeAll()
            pendingHead = 0
        } else if let index = pending[pendingHead...].firstIndex(where: { $0.id == id }) {
            failed = [pending.remove(at: index)]
        }
        condition.unlock()
        for job in failed { job.abandon(failure) }
    }

    /// Removes the job from the queue if no thread took it yet, and fails it with `CancellationError`.
    private func abandon(_ id: UInt64) {
        condition.lock()
        guard let index = pending[pendingHead...].firstIndex(where: { $0.id == id }) else {
            condition.unlock()
            return
        }
        let job = pending.remove(at: index)
        condition.unlock()
        job.abandon(CancellationError())
    }

    private func work() {
        condition.lock()
        while true {
            if pendingHead == pending.count {
                idle += 1
                let signalled = condition.wait(seconds: idleTimeout)
                idle -= 1
                if !signalled && pendingHead == pending.count {
                    threads -= 1
                    condition.unlock()
                    return
                }
                continue
            }
            if busy + inPlace >= maximumThreads {
                // Every share is taken by calls run in place: the job waits for one of them to end (timed, so
                // that a thread whose job left the queue meanwhile becomes idle and may exit).
                waitingForShare += 1
                _ = condition.wait(seconds: idleTimeout)
                waitingForShare -= 1
                continue
            }
            let job = pending[pendingHead]
            pendingHead += 1
            if pendingHead == pending.count {
                pending.removeAll(keepingCapacity: pending.count <= 64)
                pendingHead = 0
            } else if pendingHead >= 64, pendingHead * 2 >= pending.count {
                pending.removeFirst(pendingHead)
                pendingHead = 0
            }
            busy += 1
            condition.unlock()
            let resumeCaller = job.run()
            condition.lock()
            busy -= 1
            // The share is free while this thread resumes its caller: a thread whose job waits for a share may
            // start it (an idle one is not woken: this thread takes the next job itself, its caller's rest being
            // short).
            let wake = waitingForShare > 0 && pendingHead < pending.count
            condition.unlock()
            if wake { condition.signal() }
            if resumesCallersHere {
                PoolThreadResumption.resumingHere(resumeCaller)
            } else {
                resumeCaller()
            }
            condition.lock()
        }
    }
}

/// A continuation resumed by whichever of a job and its deadline comes first; the other's result is dropped.
private final class AnswerOnce<T: Sendable>: Sendable {
    private let continuation = Locked<CheckedContinuation<T, any Error>?>(nil)

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation.withLock { $0 = continuation }
    }

    /// Resumes the continuation if nothing did yet; true if this call did.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        guard let continuation = claim() else { return false }
        continuation.resume(with: result)
        return true
    }

    /// The continuation, for the caller alone to resume, if nothing resumed or claimed it yet.
    func claim() -> CheckedContinuation<T, any Error>? {
        continuation.withLock { $0.take() }
    }
}
