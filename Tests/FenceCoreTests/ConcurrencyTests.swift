import Foundation
import Logging
import Store
import TestSupport
import Testing

@testable import FenceCore

@Suite("Operations on different domains run in parallel; on one domain, one at a time")
struct ConcurrencyTests {
    @Test("five hung hypervisor calls (more than the cores) do not delay an operation on another domain")
    func differentDomainsDoNotWait() async throws {
        let harness = try await ServiceHarness()
        let gate = Gate()
        let hung = ["pcmk1", "pcmk2", "pcmk3", "pcmk4", "pcmk5"]
        for name in hung { harness.faulty.inject(.hang(gate), into: .destroy, for: Fixtures.uuids[name]!) }
        let operations = hung.map { name in Task { try await harness.perform(.off, name) } }
        try await waitUntil("all five destroys are blocked in the hypervisor") { gate.arrived == hung.count }

        // While they hang, another domain is fenced and read.
        #expect(try await harness.perform(.off, "pcmk6").power == .off)
        #expect(try await harness.perform(.status, "stopped1").power == .off)
        #expect(gate.arrived == hung.count)

        gate.open()
        for operation in operations { #expect(try await operation.value.power == .off) }
    }

    @Test("a second operation on the same domain waits for the first, then sees its effect")
    func sameDomainSerialized() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk1"]!
        let (first, gate) = try await harness.offHungInDestroy("pcmk1")

        let second = Task { try await harness.perform(.status, "pcmk1") }
        try await waitUntil("the status waits for the domain's lock") {
            await harness.service.waitingOperations(domainUUID: uuid) == 1
        }
        // The status has not read the state: that happens only once it holds the lock.
        #expect(harness.faulty.calls.filter { $0 == "state \(uuid)" }.count == 1)

        gate.open()
        #expect(try await first.value.power == .off)
        // Had it run in parallel it would have read "running": the destroy was blocked before it happened.
        #expect(try await second.value.power == .off)
        let calls = harness.faulty.calls
        let destroyReturned = try #require(calls.firstIndex(of: "destroy \(uuid) returned"))
        let lastState = try #require(calls.lastIndex(of: "state \(uuid)"))
        #expect(lastState > destroyReturned)
    }

    @Test("fence_xvm's status waits for an operation on its domain, answers the state after it, and is recorded")
    func statusWaitsForTheLock() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk1"]!
        func status(_ name: String) async throws -> DomainInfo {
            try await harness.service.status(
                FenceRequest(action: .status, target: DomainTarget(name), origin: ServiceHarness.origin)
            )
        }
        let (first, gate) = try await harness.offHungInDestroy("pcmk1")
        let waiting = Task { try await status("pcmk1") }
        try await waitUntil("the status waits for the domain's lock") {
            await harness.service.waitingOperations(domainUUID: uuid) == 1
        }
        gate.open()
        #expect(try await first.value.power == .off)
        // Had it not waited it would have read "running": the destroy was blocked before it happened.
        #expect(try await waiting.value.power == .off)
        // With the lock free, the state is read under it in the same hop as the lookup.
        #expect(try await status("pcmk2").power == .on)
        #expect(await harness.service.isBusy(domainUUID: Fixtures.uuids["pcmk2"]!) == false)
        await #expect(throws: FenceError.domainNotFound(target: "nosuch")) { try await status("nosuch") }
        let rows = try await harness.rows()
        #expect(rows.map(\.action) == ["off", "status", "status", "status"])
        #expect(rows.map(\.powerState) == ["off", "off", "on", nil])
        #expect(rows.map(\.result) == [.success, .success, .success, .failure])
    }

    @Test("operations queued on one domain run in arrival order")
    func fifo() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk2"]!
        let (first, gate) = try await harness.offHungInDestroy("pcmk2")
        let on = Task { try await harness.perform(.on, "pcmk2") }
        try await waitUntil("on is queued") { await harness.service.waitingOperations(domainUUID: uuid) == 1 }
        let status = Task { try await harness.perform(.status, "pcmk2") }
        try await waitUntil("status is queued") { await harness.service.waitingOperations(domainUUID: uuid) == 2 }
        gate.open()
        #expect(try await first.value.power == .off)
        #expect(try await on.value.power == .on)
        #expect(try await status.value.power == .on)
    }
}

@Suite("Every operation has a timeout, and a timeout is a failure")
struct TimeoutTests {
    @Test("a hung hypervisor call times out as a failure; later work on that domain waits or times out too")
    func hungCall() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk1"]!
        let gate = Gate()
        harness.faulty.inject(.hang(gate), into: .destroy, for: uuid)

        // The off is blocked inside destroy, the status queued behind it, before either deadline passes (15 s:
        // on 2 cores busy with the rest of the suite, reaching destroy took more than 6 s now and then).
        let off = Task { try await harness.perform(.off, "pcmk1", timeout: .seconds(15)) }
        try await waitUntil("the off is inside destroy", limit: .seconds(30)) { gate.arrived == 1 }
        let status = Task { try await harness.perform(.status, "pcmk1", timeout: .seconds(15)) }
        try await waitUntil("the status waits for the lock") {
            await harness.service.waitingOperations(domainUUID: uuid) == 1
        }
        for operation in [off, status] {
            await #expect {
                _ = try await operation.value
            } throws: { error in
                (error as? FenceError)?.isTimeout == true && (error as? FenceError)?.code == "timed_out"
            }
        }
        // Other domains are unaffected.
        #expect(try await harness.perform(.off, "pcmk2").power == .off)

        var rows = try await harness.rows()
        #expect(rows.map(\.result) == [.timedOut, .timedOut, .success])
        #expect(rows.map(\.action) == ["off", "status", "off"])
        #expect(rows[0].errorCode == "timed_out")
        try await waitUntil("the abandoned waiter is recorded") {
            try await harness.row(rows[1].id)?.message?.contains("gave up waiting") == true
        }

        gate.open()
        try await waitUntil("the late completion is recorded") {
            try await harness.row(rows[0].id)?.message?.contains("after the timeout") == true
        }
        rows = try await harness.rows()
        #expect(rows[0].result == .timedOut)  // still a failure: the client was told so
        #expect(rows[0].message?.contains("domain is off") == true)
        // Two state reads, both by the off (before its destroy, and after it returned late): the abandoned
        // status never touched the hypervisor once the lock was freed.
        #expect(harness.faulty.calls.filter { $0 == "state \(uuid)" }.count == 2)
        #expect(try await harness.perform(.status, "pcmk1").power == .off)
    }

    @Test("a lookup that hangs times out and is recorded")
    func hungLookup() async throws {
        let harness = try await ServiceHarness()
        let gate = Gate()
        harness.faulty.inject(.hang(gate), into: .domain, for: "pcmk3")
        await #expect { _ = try await harness.perform(.off, "pcmk3", timeout: .milliseconds(200)) } throws: {
            ($0 as? FenceError)?.isTimeout == true
        }
        gate.open()
        let row = try #require(try await harness.rows().first)
        #expect(row.result == .timedOut)
        #expect(row.domainUUID == nil)
        #expect(try harness.state("pcmk3") == .running)
    }
}

@Suite("Hypervisor connections")
struct HypervisorConnectionTests {
    @Test("a libvirtd URI may open several connections (calls on one queue behind each other); the test driver one")
    func connectionLimits() throws {
        let logger = Logger(label: "test")
        #expect(LibvirtHypervisor(uri: "qemu:///system", logger: logger).maximumConnections == 16)
        #expect(
            LibvirtHypervisor(uri: "qemu+ssh://host/system", logger: logger, maximumConnections: 2).maximumConnections
                == 2
        )
        #expect(
            LibvirtHypervisor(uri: "test:///default", logger: logger, maximumConnections: 8).maximumConnections == 1
        )
    }

    @Test("with the test driver, every call sees one world: a change made by one call is seen by the next")
    func testDriverKeepsOneWorld() async throws {
        let harness = try await ServiceHarness()
        let first = try harness.libvirt.domain(DomainTarget("pcmk1"))
        try harness.libvirt.destroy(domain: first.uuid)
        // Concurrent calls: with the test driver they must all share the one connection (one world).
        let states = try await withThrowingTaskGroup(of: DomainState?.self) { group in
            for _ in 0..<8 { group.addTask { try harness.libvirt.state(ofDomain: first.uuid) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(states == [DomainState?](repeating: .shutOff, count: 8))
        #expect(harness.libvirt.openConnections == 1)
    }
}

@Suite("Refusal limits per client and overall")
struct AuditRowLimiterTests {
    static let intent = AuditIntent(
        FenceRequest(action: .off, target: "pcmk1", origin: RequestOrigin(frontEnd: .http, requester: nil))
    )

    @Test("per client, overall, and beyond the clients tracked: rows are bounded, every refusal is counted")
    func limits() {
        let limiter = AuditRowLimiter(
            kind: "refusal",
            limits: .init(perClient: 2, overall: 5, window: .seconds(60), maximumClients: 3)
        )
        var recorded = 0
        var counted = 0
        var summaryKeys: Set<String> = []
        for client in 0..<10 {
            for _ in 0..<4 {
                switch limiter.admit(Self.intent, result: .refused, reason: "no token", client: "client \(client)").0 {
                case .record:
                    recorded += 1
                case .count(let key, let due, let window):
                    counted += 1
                    // The summary is due once per entry, under the entry's own key.
                    if due != nil { #expect(summaryKeys.insert(key).inserted) }
                    _ = window
                }
            }
        }
        #expect(recorded == 5)  // the overall limit
        #expect(counted == 35)
        // One summary per tracked client with counted refusals, and one for every client beyond those, each
        // found under the key its decision named.
        #expect(summaryKeys == ["client 0", "client 1", "client 2", AuditRowLimiter.otherClients])
        let summaries = limiter.takeAllSummaries()
        #expect(summaries.map(\.count).reduce(0, +) == 35)
        #expect(Set(summaries.map(\.client)) == summaryKeys)
        #expect(limiter.takeAllSummaries().isEmpty)
    }
}
