import Glibc

/// A value that threads share, guarded by a POSIX mutex that puts a waiting thread to sleep at once.
///
/// Fencegate's locks, in place of the standard library's `Synchronization.Mutex`, whose Linux implementation
/// (Swift 6.3) spins before it sleeps: a thread that finds the lock held runs pause loops on its core, hoping
/// for the holder to finish. Fencegate runs more threads than a small host has cores (libmicrohttpd's, the
/// blocking pools', Swift's), so the holder is often not running at all, and the spinning took the core it
/// needed: with the HTTP handlers' ends on the hypervisor pool's threads, `perf` put a third of the process's
/// CPU in that spin (bench/profile-notes.md, note 15). glibc's default mutex sleeps in the kernel when
/// contended and costs one atomic operation when not.
///
/// The same shape as `Mutex`: `withLock` hands the value to a closure that runs with the lock held.
package final class Locked<Value: ~Copyable>: @unchecked Sendable {
    // @unchecked: `value` is only touched with `mutex` locked; the pthread mutex never moves (allocated here).
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    package init(_ initialValue: consuming sending Value) {
        value = initialValue
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        // A lock taken again by the thread that holds it traps (`withLock`), as `Mutex` does, instead of
        // waiting for ever: a crashed daemon is restarted, a hung one is not.
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ERRORCHECK))
        precondition(pthread_mutex_init(mutex, &attributes) == 0, "pthread_mutex_init failed")
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held and the value to read or change.
    package func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        let locked = pthread_mutex_lock(mutex)
        precondition(locked == 0, "Locked: the lock is held already by this thread (\(locked))")
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
