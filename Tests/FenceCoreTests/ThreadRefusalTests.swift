import Foundation
import Synchronization
import Testing

@testable import FenceCore

/// A system that refuses threads (a full pids cgroup, no memory for a stack) cannot be made inside the test
/// runner without starving the runner's own threads; the pool is given a fake thread starter instead, named
/// as such, that refuses when told to.
@Suite("Threads the system refuses: a pool's callers get the reason, and nothing waits for a thread that never ran")
struct ThreadRefusalTests {
    /// Fake: starts threads with `DetachedThread` until `refusing`, then throws as `pthread_create` fails with
    /// EAGAIN; holds each start until `release` if `holding` (to let other jobs queue meanwhile).
    final class RefusingStarter: Sendable {
        let refusing = Mutex(false)
        let holding = Mutex(false)
        let held = DispatchSemaphore(value: 0)
        let arrived = DispatchSemaphore(value: 0)

        func start(_ name: String, _ body: @escaping @Sendable () -> Void) throws(DetachedThread.StartFailure) {
            if holding.withLock({ $0 }) {
                arrived.signal()
                held.wait()
            }
            if refusing.withLock({ $0 }) { throw DetachedThread.StartFailure(thread: name, code: EAGAIN) }
            try DetachedThread.start(name: name, body)
        }
    }

    @Test("a refused thread fails its job at once; the pool starts threads again once the system allows")
    func refusedThenAllowed() async throws {
        let starter = RefusingStarter()
        starter.refusing.withLock { $0 = true }
        let pool = BlockingThreadPool(name: "test.refusing", maximumThreads: 2) {
            name,
            body throws(DetachedThread.StartFailure) in
            try starter.start(name, body)
        }
        let ran = Mutex(false)
        await #expect(throws: DetachedThread.StartFailure.self) { try await pool.run { ran.withLock { $0 = true } } }
        #expect(ran.withLock { $0 } == false)
        #expect(pool.census.threads == 0 && pool.census.queued == 0)
        starter.refusing.withLock { $0 = false }
        #expect(try await pool.run { 42 } == 42)
    }

    @Test("jobs queued behind the only thread, which is then refused, all fail: none waits for it")
    func queuedBehindRefusedThread() async throws {
        let starter = RefusingStarter()
        starter.refusing.withLock { $0 = true }
        starter.holding.withLock { $0 = true }
        let pool = BlockingThreadPool(name: "test.refusing", maximumThreads: 1) {
            name,
            body throws(DetachedThread.StartFailure) in
            try starter.start(name, body)
        }
        let first = Task { try await pool.run { 1 } }
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                starter.arrived.wait()  // the first job's thread is being started: it counts already
                continuation.resume()
            }
        }
        starter.holding.withLock { $0 = false }
        let second = Task { try await pool.run { 2 } }
        // The second job is queued for the thread being started (the pool is at its one thread).
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while pool.census.queued < 2, clock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        #expect(pool.census.queued == 2)
        starter.held.signal()
        // Both leave the queue at once; a job left waiting for the refused thread would stay until cancelled.
        let settled = clock.now + .seconds(10)
        while pool.census.queued > 0, clock.now < settled { try await Task.sleep(for: .milliseconds(1)) }
        #expect(pool.census.queued == 0)
        first.cancel()
        second.cancel()
        for task in [first, second] {
            let outcome = await task.result
            #expect(throws: DetachedThread.StartFailure.self) { try outcome.get() }
        }
        #expect(pool.census.threads == 0 && pool.census.queued == 0)
    }
}
