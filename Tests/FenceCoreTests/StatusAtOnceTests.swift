import Foundation
import Store
import TestSupport
import Testing

@testable import FenceCore

/// fence_xvm's status answered on the caller's thread when nothing needs waiting for; every other case is
/// left to `status(_:)`, and each request gets exactly one row.
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

    @Test("a free domain is answered at once and recorded once; held, missing, refused ones are left to status(_:)")
    func answeredAtOnceOrLeft() async throws {
        let harness = try await ServiceHarness()
        #expect(harness.service.statusAtOnce(Self.status("pcmk1"))?.power == .on)
        // Held by an operation (status(_:) waits for it), missing, refused by the groups, or needing every
        // domain to be judged (an entry that differs in case only): nothing answered, nothing recorded.
        let (operation, gate) = try await harness.offHungInDestroy("pcmk2")
        #expect(harness.service.statusAtOnce(Self.status("pcmk2")) == nil)
        gate.open()
        _ = try await operation.value
        #expect(harness.service.statusAtOnce(Self.status("no-such-domain")) == nil)
        let others = FenceGroups([FenceGroups.Group(requesters: ["198.18.0.99"], domains: ["pcmk3"])])
        #expect(harness.service.statusAtOnce(Self.status("pcmk3", groups: others)) == nil)
        let caseOnly = FenceGroups([FenceGroups.Group(requesters: ["198.18.0.11"], domains: ["PCMK3"])])
        #expect(harness.service.statusAtOnce(Self.status("pcmk3", groups: caseOnly)) == nil)
        let allowed = FenceGroups([FenceGroups.Group(requesters: ["198.18.0.11"], domains: ["pcmk3"])])
        #expect(harness.service.statusAtOnce(Self.status("pcmk3", groups: allowed))?.name == "pcmk3")
        let rows = try await harness.rows().filter { $0.action == "status" }
        #expect(rows.map(\.domainName) == ["pcmk1", "pcmk3"], "\(rows)")
        #expect(rows.allSatisfy { $0.result == .success && $0.source == "multicast" }, "\(rows)")
    }

    @Test("a call run in place takes one of the pool's threads: none when all are taken; a waiting job runs after it")
    func poolRunInPlace() async throws {
        let pool = BlockingThreadPool(name: "test.pool", maximumThreads: 1, maximumQueued: 4)
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
        try await Task.sleep(for: .milliseconds(100))
        #expect(ran.values.isEmpty, "a pool thread ran a job while the call in place held the only share")
        gate.open()
        try await queued.value
        #expect(ran.values == [4])
        try await waitUntil("the call in place returned") { inPlace.values == [2] }
    }
}
