import Dispatch

/// A serial executor backed by one `DispatchQueue`, so an actor's blocking C calls (libsqlite3 and its
/// fsyncs) run on that queue's thread instead of Swift's cooperative pool.
///
/// Linux's Dispatch has no `DispatchSerialQueue` executor, hence this small adapter.
final class SerialQueueExecutor: SerialExecutor {
    let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    /// A block on `queue` runs alone among the actor's jobs, as they do: `assumeIsolated` may run actor code
    /// there without a task of its own.
    func checkIsolated() {
        dispatchPrecondition(condition: .onQueue(queue))
    }
}
