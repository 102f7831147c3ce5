import Foundation
import Logging
import Store
import TestSupport
import Testing

@testable import FenceCore

/// What requests can make the service hold: deadlines, threads, connections. Each bound is counted, not
/// timed, so these tests cannot be flaky on a slow machine.
@Suite("Bounds: deadlines, threads and connections do not outlive or outnumber their requests")
struct BoundsTests {
    @Test(
        "a deadline is forgotten when its work finishes: 10,000 quick operations with a 10-minute deadline leave none"
    )
    func deadlinesGoWithTheirRequests() async throws {
        let scheduler = DeadlineScheduler(name: "test.deadlines")
        for _ in 0..<10_000 {
            _ = try await withDeadline(.now + .seconds(600), scheduler: scheduler) { 1 }
        }
        // Before, each request left a timer task sleeping until its deadline, memory and all.
        #expect(scheduler.pendingCount == 0)
        #expect(scheduler.heapCount == 0)
    }

    @Test("cancelled deadlines do not pile up in the heap while others are pending")
    func cancelledDeadlinesAreCompacted() async throws {
        let scheduler = DeadlineScheduler(name: "test.deadlines")
        let far = scheduler.schedule(at: .now + .seconds(3600)) {}
        var tickets: [DeadlineScheduler.Ticket] = []
        for _ in 0..<10_000 { tickets.append(scheduler.schedule(at: .now + .seconds(600)) {}) }
        for ticket in tickets { scheduler.cancel(ticket) }
        #expect(scheduler.pendingCount == 1)
        #expect(scheduler.heapCount <= 130)
        scheduler.cancel(far)
        #expect(scheduler.heapCount == 0)
    }

    @Test("deadlines fire in order, and the operation past its deadline is cancelled")
    func deadlinesFire() async throws {
        let scheduler = DeadlineScheduler(name: "test.deadlines")
        let fired = Fired()
        for delay in [300, 100, 200] {
            _ = scheduler.schedule(at: .now + .milliseconds(delay)) { fired.append(delay) }
        }
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.now + .milliseconds(50), scheduler: scheduler) {
                try await Task.sleep(for: .seconds(30))
            }
        }
        try await waitUntil("all three fired") { fired.values.count == 3 }
        #expect(fired.values == [100, 200, 300])
    }

    @Test("a deadline earlier than the one the scheduler sleeps until fires on time; later ones wait their turn")
    func earlierDeadlineWakes() async throws {
        let scheduler = DeadlineScheduler(name: "test.deadlines")
        let fired = Fired()
        let far = scheduler.schedule(at: .now + .seconds(3600)) { fired.append(3600) }
        try await Task.sleep(for: .milliseconds(50))  // the thread now sleeps until the far deadline
        // Seconds apart, so that a test thread descheduled on a loaded machine still cancels in time.
        let cancelled = scheduler.schedule(at: .now + .seconds(2)) { fired.append(-1) }
        _ = scheduler.schedule(at: .now + .milliseconds(2400)) { fired.append(300) }
        scheduler.cancel(cancelled)
        // Later than the instant the thread sleeps until (2 s): no wake-up, yet it fires in its turn.
        _ = scheduler.schedule(at: .now + .milliseconds(2200)) { fired.append(200) }
        try await waitUntil("both fired") { fired.values.contains(200) && fired.values.contains(300) }
        #expect(fired.values == [200, 300])
        scheduler.cancel(far)
    }

    @Test("a pool call with a deadline: a queued job whose deadline passes never runs; a running one's is dropped")
    func poolDeadline() async throws {
        let pool = BlockingThreadPool(name: "test.pool", maximumThreads: 1, maximumQueued: 4)
        let gate = Gate()
        let hung = Task { try await pool.run(until: .now + .milliseconds(300)) { gate.pass() } }
        try await waitUntil("the call runs") { gate.arrived == 1 }
        let ran = Fired()
        await #expect(throws: DeadlineExceeded.self) {
            try await pool.run(until: .now + .milliseconds(100)) { ran.append(2) }
        }
        #expect(pool.census.queued == 0)
        await #expect(throws: DeadlineExceeded.self) { try await hung.value }
        gate.open()
        try await waitUntil("the pool is idle") { pool.census.busy == 0 }
        #expect(ran.values.isEmpty)
        #expect(try await pool.run(until: .now + .seconds(5)) { 3 } == 3)
    }

    @Test(
        "the pool runs at most its threads; a queued call whose caller gives up never runs; a full queue refuses at once"
    )
    func poolIsBounded() async throws {
        let pool = BlockingThreadPool(name: "test.pool", maximumThreads: 3, maximumQueued: 2)
        let gate = Gate()
        let hung = (0..<3).map { _ in Task { try await pool.run { gate.pass() } } }
        try await waitUntil("three calls hang") { gate.arrived == 3 }
        let ran = Fired()
        let queued = Task { try await pool.run { ran.append(1) } }
        let abandoned = Task { try await pool.run { ran.append(2) } }
        try await waitUntil("two calls wait") { pool.census.queued == 2 }
        await #expect(throws: BlockingThreadPool.Saturated.self) { try await pool.run { ran.append(3) } }
        abandoned.cancel()
        await #expect(throws: CancellationError.self) { try await abandoned.value }
        #expect(pool.census.threads == 3 && pool.census.queued == 1)
        gate.open()
        for task in hung { try await task.value }
        try await queued.value
        #expect(ran.values == [1])
        #expect(pool.census.threads <= 3)
    }

    @Test("reads stuck behind a domain the hypervisor holds never take the threads a fence needs")
    func readsCannotStarveFences() async throws {
        var configuration = FenceService.Configuration()
        configuration.hypervisorThreads = 4  // one for reads, three for fences
        configuration.operationTimeout = .seconds(10)
        let harness = try await ServiceHarness(configuration: configuration)
        // Every listing hangs, as behind a domain libvirt holds while it kills a stuck QEMU.
        let gate = Gate()
        harness.faulty.inject(.hang(gate), into: .domains, for: "*")
        let reads = (0..<12).map { _ in
            Task { _ = try? await harness.service.list(origin: ServiceHarness.origin) }
        }
        try await waitUntil("every listing is in a call or waits for a thread") {
            let census = harness.service.hypervisorPoolCensus
            return gate.arrived >= 1 && census.busy + census.queued == 12
        }
        #expect(try await harness.perform(.off, "pcmk1").power == .off)
        #expect(gate.arrived == 1, "listings held \(gate.arrived) threads")
        gate.open()
        for read in reads { await read.value }
    }

    @Test("a libvirtd that accepts and never answers: many calls open one connection, not one each")
    func oneOpenAtATime() async throws {
        let directory = try TemporaryDirectory()
        let hung = try HungLibvirtdSocket(path: directory.file("sock"))
        defer { hung.stop() }
        var configuration = FenceService.Configuration()
        configuration.operationTimeout = .seconds(30)
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: ServiceHarness.logger)
        let service = FenceService(
            hypervisor: LibvirtHypervisor(uri: hung.uri, logger: ServiceHarness.logger),
            store: store,
            configuration: configuration,
            logger: ServiceHarness.logger
        )
        let calls = (0..<40).map { _ in Task { _ = try? await service.domains() } }
        try await waitUntil("a call reaches the hung libvirtd") { hung.accepted >= 1 }
        // Listings are reads: the reads' threads (8 of 32) wait for the one open, the rest wait for a thread.
        try await waitUntil("every call is in the pool, waiting for the one open") {
            let census = service.hypervisorPoolCensus
            return census.busy == configuration.hypervisorReadThreads
                && census.queued == 40 - configuration.hypervisorReadThreads
        }
        #expect(hung.accepted == 1, "\(hung.accepted) connections")
        // The calls that waited for the one open hold a pool thread each until it ends: at most the pool.
        #expect(service.hypervisorPoolCensus.threads <= configuration.hypervisorThreads)
        // When the hung libvirtd goes away, the waiting calls end and their threads are free again.
        hung.stop()
        for call in calls { await call.value }
        try await waitUntil("the pool is idle again") { service.hypervisorPoolCensus.busy == 0 }
    }
}

/// Values appended from several threads.
final class Fired: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Int] = []

    func append(_ value: Int) { lock.withLock { stored.append(value) } }
    var values: [Int] { lock.withLock { stored } }
}
