import Foundation
import Locking
import Testing

@testable import FenceCore

/// `ResumeOnPoolThread`: a task that prefers it goes on, after a call on a pool made with `resumesCallersHere`,
/// on the pool thread that made the call, no longer counted as one of the pool's calls, and pulls nothing else
/// onto that thread; `Locked` guards its value.
@Suite("Pool resumption: a request's rest runs on the pool thread that answered it")
struct PoolResumptionTests {
    /// The thread the task was on before its pool call, the one the call ran on, the one the task went on with
    /// after it, and how many calls the pool counted as running then.
    private struct Threads: Sendable {
        let before: pthread_t
        let call: pthread_t
        let after: pthread_t
        let busyAfter: Int

        var onThePoolThread: Bool { pthread_equal(call, after) != 0 }
        var onTheCallersThread: Bool { pthread_equal(before, after) != 0 }
    }

    /// The calling thread, after 5 ms: usually long enough for the awaiting task to have suspended (a call
    /// that ends before its caller suspends never leaves the caller's thread).
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
            let before = pthread_self()
            let call =
                if let deadline {
                    try await pool.run(until: deadline) { Self.afterAPause() }
                } else {
                    try await pool.run { Self.afterAPause() }
                }
            return Threads(before: before, call: call, after: pthread_self(), busyAfter: pool.census.busy)
        }.value
    }

    @Test("with the preference, the task goes on on the pool's thread, which no longer counts it as a call")
    func resumesOnThePoolThread() async throws {
        let pool = BlockingThreadPool(name: "test.resume", maximumThreads: 2, resumesCallersHere: true)
        var onThePoolThread = 0
        for round in 0..<20 {
            let deadline: ContinuousClock.Instant? = round.isMultiple(of: 2) ? nil : .now + .seconds(30)
            let threads = try await Self.callAndContinue(
                on: pool,
                preferring: ResumeOnPoolThread.shared,
                until: deadline
            )
            // On a loaded machine the call may end before the task suspended: then it stays where it was.
            #expect(threads.onThePoolThread || threads.onTheCallersThread, "round \(round)")
            if threads.onThePoolThread {
                onThePoolThread += 1
                #expect(threads.busyAfter == 0, "round \(round)")
            }
        }
        #expect(onThePoolThread > 0)
    }

    @Test("without the preference, or on a pool that does not resume its callers, Swift's threads go on")
    func otherwiseSwiftsThreads() async throws {
        let resuming = BlockingThreadPool(name: "test.resume", maximumThreads: 2, resumesCallersHere: true)
        let plain = BlockingThreadPool(name: "test.plain", maximumThreads: 2)
        for round in 0..<20 {
            let withoutPreference = try await Self.callAndContinue(on: resuming, preferring: nil)
            #expect(!withoutPreference.onThePoolThread, "round \(round)")
            let plainPool = try await Self.callAndContinue(on: plain, preferring: ResumeOnPoolThread.shared)
            #expect(!plainPool.onThePoolThread, "round \(round)")
        }
    }

    @Test("a task going on on the pool's thread pulls no other task onto it")
    func onlyTheCallerRunsThere() async throws {
        let pool = BlockingThreadPool(name: "test.resume", maximumThreads: 1, resumesCallersHere: true)
        for round in 0..<20 {
            let (poolThread, childThread) = try await Task(executorPreference: ResumeOnPoolThread.shared) {
                let poolThread = try await pool.run { Self.afterAPause() }
                // Started from the pool's thread (or, if the call ended first, from Swift's), with the same
                // preference: it must not run inline in the middle of this task, but on Swift's threads.
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
