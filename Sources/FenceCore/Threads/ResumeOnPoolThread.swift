import Glibc

/// A task executor for requests that wait on a `BlockingThreadPool`: a task that a pool job resumes (its
/// call's result is in) goes on running right there, on the pool thread that produced the result, instead of
/// waking a thread of Swift's pool to do so. Every other enqueue (a task's start, a return from an actor, a
/// resumption by a deadline or by anything else) goes to Swift's global executor, as without a preference.
///
/// Only the first enqueue after a pool job's own resumption runs in place (`BlockingThreadPool` marks it, on
/// pools made with `resumesCallersHere`), so that a task running here cannot pull further tasks onto this
/// thread; the pool holds no lock then, and no longer counts the thread as running one of its calls. The task
/// runs here until its next suspension, so it must not block. For tasks started with `executorPreference:
/// ResumeOnPoolThread.shared`: the HTTP server's handlers and the fence_xvm sessions (tasks they start
/// without the preference, such as a fence's deadline task, go through Swift's pool as before).
package final class ResumeOnPoolThread: TaskExecutor {
    package static let shared = ResumeOnPoolThread()

    private init() {}

    package func enqueue(_ job: consuming ExecutorJob) {
        if PoolThreadResumption.takeMark() {
            job.runSynchronously(on: asUnownedTaskExecutor())
        } else {
            globalConcurrentExecutor.enqueue(job)
        }
    }
}

/// The mark a pool job sets on its thread for the one resumption of its caller (`ResumeOnPoolThread`).
enum PoolThreadResumption {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    /// Runs `resume` (a pool job resuming its caller's continuation) with this thread marked, so that the
    /// caller, if its task prefers `ResumeOnPoolThread`, goes on running here; unmarked again after it.
    static func resumingHere(_ resume: () -> Void) {
        // Any non-nil value: the mark is whether the thread's value is set, never what it points to.
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        resume()
        pthread_setspecific(key, nil)
    }

    /// True, once, if this thread is marked; the mark is cleared.
    static func takeMark() -> Bool {
        guard pthread_getspecific(key) != nil else { return false }
        pthread_setspecific(key, nil)
        return true
    }
}
