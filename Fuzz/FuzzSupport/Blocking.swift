import Foundation

/// Runs `operation` as a task and blocks the calling thread until it returns: libFuzzer calls a target
/// synchronously. Never call it from a task.
///
/// The task prefers an executor that runs its jobs on the calling thread while it waits, so that only
/// actors, other tasks and blocking calls the operation awaits hand work to other threads.
public func waitFor<T: Sendable>(_ operation: @escaping @Sendable () async -> T) -> T {
    let executor = CallingThreadExecutor()
    let slot = ResultSlot<T>()
    Task(executorPreference: executor) {
        slot.fill(await operation())
        executor.stop()
    }
    executor.runJobs()
    return slot.take()
}

/// A task executor whose jobs run on the thread in `runJobs`.
private final class CallingThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `stopped` are only touched with `condition` locked.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    /// A job that comes after `runJobs` returned (from a task that inherited the preference) runs on the
    /// global executor instead.
    func enqueue(_ job: consuming ExecutorJob) {
        condition.lock()
        guard !stopped else {
            condition.unlock()
            globalConcurrentExecutor.enqueue(job)
            return
        }
        jobs.append(UnownedJob(job))
        condition.signal()
        condition.unlock()
    }

    /// Ends `runJobs` once the jobs already queued have run.
    func stop() {
        condition.lock()
        stopped = true
        condition.unlock()
    }

    /// Runs jobs as they come until `stop` is called.
    func runJobs() {
        condition.lock()
        while true {
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty { break }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
            condition.lock()
        }
        condition.unlock()
    }
}

/// Hands a task's result to the thread that waited for it.
private final class ResultSlot<T: Sendable>: @unchecked Sendable {
    // @unchecked: `value` is written before the task calls `stop` and read after `runJobs` saw it stopped;
    // the executor's lock orders the two.
    private var value: T?

    func fill(_ result: T) { value = result }
    func take() -> T { value! }
}
