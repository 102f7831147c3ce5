import Foundation
import Store
import TestSupport
import Testing

@testable import FenceCore

/// fence_xvm's status answered on the caller's thread when nothing needs waiting for; every other case is
/// left to `status(_:since:)`, and each request answered gets exactly one row.
@Suite("Status answered at once, on the caller's thread")
struct StatusAtOnceTests {
    static func status(_ target: String, groups: FenceGroups = FenceGroups()) -> FenceRequest {
        FenceRequest(
            action: .status,
            target: DomainTarget(target),
            origin: RequestOrigin(
                frontEnd: .multicast,
                requester: "198.18.0.11",
                sendingDomain: .address("198.18.0.11")
            ),
            access: GroupAccess(groups: groups, requester: "198.18.0.11")
        )
    }

    @Test("a free domain is answered at once and recorded once; missing, refused or case-only ones are left over")
    func answeredAtOnceOrLeft() async throws {
        let harness = try await ServiceHarness()
        let service = harness.service
        // No hypervisor connection is open yet, and none is opened here (it could wait for libvirtd).
        #expect(service.statusAtOnce(Self.status("pcmk1"), since: .now) == nil)
        #expect(harness.libvirt.openConnections == 0)
        _ = try harness.state("pcmk1")
        #expect(service.statusAtOnce(Self.status("pcmk1"), since: .now)?.power == .on)
        #expect(service.statusAtOnce(Self.status("no-such-domain"), since: .now) == nil)
        // Refused by the groups, or needing every domain to be judged (an entry that differs in case only).
        let others = FenceGroups([FenceGroups.Group(requesters: ["198.18.0.99"], domains: ["pcmk3"])])
        #expect(service.statusAtOnce(Self.status("pcmk3", groups: others), since: .now) == nil)
        let caseOnly = FenceGroups([FenceGroups.Group(requesters: ["198.18.0.11"], domains: ["PCMK3"])])
        #expect(service.statusAtOnce(Self.status("pcmk3", groups: caseOnly), since: .now) == nil)
        let allowed = FenceGroups([FenceGroups.Group(requesters: ["198.18.0.11"], domains: ["pcmk3"])])
        #expect(service.statusAtOnce(Self.status("pcmk3", groups: allowed), since: .now)?.name == "pcmk3")
        // A read that fails is left to status(_:since:), which reports it.
        harness.faulty.inject(.fail, into: .state, for: Fixtures.uuids["pcmk1"]!)
        #expect(service.statusAtOnce(Self.status("pcmk1"), since: .now) == nil)
        let rows = try await harness.rows().filter { $0.action == "status" }
        #expect(rows.map(\.domainName) == ["pcmk1", "pcmk3"], "\(rows)")
        #expect(rows.allSatisfy { $0.result == .success && $0.source == "multicast" }, "\(rows)")
    }

    @Test("nothing is answered at once while an operation holds a domain (libvirt may hold it too)")
    func notWhileAChangeRuns() async throws {
        let harness = try await ServiceHarness()
        let service = harness.service
        let (operation, gate) = try await harness.offHungInDestroy("pcmk2")
        // Another domain: a lookup could wait for a domain libvirt holds while destroying it.
        #expect(service.statusAtOnce(Self.status("pcmk1"), since: .now) == nil)
        #expect(service.statusAtOnce(Self.status("pcmk2"), since: .now) == nil)
        gate.open()
        _ = try await operation.value
        #expect(service.statusAtOnce(Self.status("pcmk1"), since: .now)?.power == .on)
        #expect(service.statusAtOnce(Self.status("pcmk2"), since: .now)?.power == .off)
    }

    @Test("a call run in place takes one of the pool's shares: none when all are taken; a waiting job runs after it")
    func poolRunInPlace() async throws {
        let pool = BlockingThreadPool(name: "test.pool", maximumThreads: 1, maximumQueued: 1)
        #expect(pool.runInPlace { 1 } == 1)
        let gate = Gate()
        let inPlace = Fired()
        let thread = Thread {
            inPlace.append(
                pool.runInPlace {
                    gate.pass()
                    return 2
                } ?? -1
            )
        }
        thread.start()
        try await waitUntil("the call in place runs") { gate.arrived == 1 }
        #expect(pool.census.busy == 1)
        #expect(pool.runInPlace { 3 } == nil)
        let ran = Fired()
        let queued = Task { try await pool.run { ran.append(4) } }
        try await waitUntil("a job waits") { pool.census.queued == 1 }
        // The pool's thread that waits for the share is not idle: with the queue full, the next job is
        // refused at once instead of queueing beyond the bound.
        try await waitUntil("the pool's thread waits for the share") { pool.threadsWaitingForShare == 1 }
        let refused = Fired()
        let beyond = Task {
            do {
                try await pool.run { ran.append(5) }
            } catch is BlockingThreadPool.Saturated {
                refused.append(5)
            }
        }
        try await waitUntil("the job beyond the bound is refused or queued") {
            pool.census.queued == 2 || refused.values == [5]
        }
        #expect(refused.values == [5], "queued beyond the bound of 1")
        beyond.cancel()  // one queued (a failure above) leaves the queue
        try await Task.sleep(for: .milliseconds(100))
        #expect(ran.values.isEmpty, "a pool thread ran a job while the call in place held the only share")
        gate.open()
        try await queued.value
        #expect(ran.values == [4])
        try await waitUntil("the call in place returned") { inPlace.values == [2] }
    }

    /// The lost wake-up this guards against (a freed share signalled only threads waiting for a share, while
    /// the job's thread could be an idle one) needs the condition's signal to pick a particular waiter: this
    /// test checks the behaviour but did not catch the old code in six runs; the fix holds by construction.
    @Test("when a call run in place ends, a job waiting for its share runs at once, whichever thread waits")
    func shareFreedWakesAWaitingJob() async throws {
        // Long idle timeout: a job left waiting would run only when an idle thread gives up, 60 s later.
        let pool = BlockingThreadPool(name: "test.pool", maximumThreads: 2, maximumQueued: 4, idleTimeout: 60)
        // Two pool threads, idle.
        let warm = Gate()
        let warming = (0..<2).map { _ in Task { try await pool.run { warm.pass() } } }
        try await waitUntil("two pool threads run") { warm.arrived == 2 }
        warm.open()
        for task in warming { try await task.value }
        // Both shares taken by calls in place, then two jobs queued behind them.
        let inPlace = [Gate(), Gate()]
        for gate in inPlace { Thread { _ = pool.runInPlace { gate.pass() } }.start() }
        try await waitUntil("both calls run in place") { inPlace.allSatisfy { $0.arrived == 1 } }
        let jobs = Gate()
        let queued = (0..<2).map { _ in Task { try await pool.run { jobs.pass() } } }
        try await waitUntil("two jobs wait") { pool.census.queued == 2 }
        inPlace[0].open()
        try await waitUntil("the first job runs") { jobs.arrived == 1 }
        inPlace[1].open()
        try await waitUntil("the second job runs", limit: .seconds(10)) { jobs.arrived == 2 }
        jobs.open()
        for task in queued { try await task.value }
    }
}
