import Foundation
import Locking
import Testing

@testable import FenceCore

/// `ResumeOnPoolThread`: a task that prefers it goes on, after a pool call, on the pool thread that made the
/// call, and pulls nothing else onto that thread; `Locked` guards its value.
@Suite("Pool resumption: a request's rest runs on the pool thread that answered it")
struct PoolResumptionTests {
    /// The thread a closure ran on, and the one the task went on with after awaiting the pool.
    private struct Threads: Sendable {
        let call: pthread_t
        let after: pthread_t
    }

    /// The calling thread, after 5 ms: long enough for the awaiting task to have suspended (a call that ends
    /// before its caller suspends never leaves the caller's thread).
    private static func afterAPause() -> pthread_t {
        usleep(5_000)
        return pthread_self()
    }

    private static func callAndContinue(
        on pool: BlockingThreadPool,
        preferring executor: (any TaskExecutor)?,
        until deadline: ContinuousClock.Instant? = nil
    ) async throws -> Threads {
        try await Task(executorPreference: executor) {
            let call =
                if let deadline {
                    try await pool.run(until: deadline) { Self.afterAPause() }
                } else {
                    try await pool.run { Self.afterAPause() }
                }
            return Threads(call: call, after: pthread_self())
        }.value
    }

    @Test("with the preference, the task goes on on the pool's thread, with or without a deadline")
    func resumesOnThePoolThread() async throws {
        let pool = BlockingThreadPool(name: "test.resume", maximumThreads: 2)
        for round in 0..<20 {
            let deadline: ContinuousClock.Instant? = round.isMultiple(of: 2) ? nil : .now + .seconds(30)
            let threads = try await Self.callAndContinue(
                on: pool,
                preferring: ResumeOnPoolThread.shared,
                until: deadline
            )
            #expect(pthread_equal(threads.call, threads.after) != 0, "round \(round)")
        }
    }

    @Test("without the preference, the task goes on on Swift's threads, never the pool's")
    func withoutThePreferenceSwiftsThreads() async throws {
        let pool = BlockingThreadPool(name: "test.resume", maximumThreads: 2)
        for round in 0..<20 {
            let threads = try await Self.callAndContinue(on: pool, preferring: nil)
            #expect(pthread_equal(threads.call, threads.after) == 0, "round \(round)")
        }
    }

    @Test("a task going on on the pool's thread pulls no other task onto it")
    func onlyTheCallerRunsThere() async throws {
        let pool = BlockingThreadPool(name: "test.resume", maximumThreads: 1)
        for round in 0..<20 {
            let (poolThread, childThread) = try await Task(executorPreference: ResumeOnPoolThread.shared) {
                let poolThread = try await pool.run { Self.afterAPause() }
                // Started from the pool's thread, with the same preference: it must not run there (inline, in the
                // middle of this task), but on Swift's threads.
                let child = Task(executorPreference: ResumeOnPoolThread.shared) { pthread_self() }
                return (poolThread, await child.value)
            }.value
            #expect(pthread_equal(poolThread, childThread) == 0, "round \(round)")
        }
    }

    @Test("Locked: increments from many threads at once are none of them lost")
    func lockedCounts() async {
        let counter = Locked(0)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<10_000 { counter.withLock { $0 += 1 } }
                }
            }
        }
        #expect(counter.withLock { $0 } == 80_000)
    }
}
