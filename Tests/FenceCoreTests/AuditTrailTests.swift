import Foundation
import Store
import Synchronization
import TestSupport
import Testing

@testable import FenceCore

@Suite("Every operation is audited before and after")
struct AuditTrailTests {
    @Test("the intent row, with the domain resolved, exists before the hypervisor is asked to change anything")
    func intentBeforeAction() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk1"]!
        let (operation, gate) = try await harness.offHungInDestroy("pcmk1")
        let started = try #require(try await harness.rows().first)
        #expect(started.state == .started)
        #expect(started.result == nil)
        #expect(started.action == "off")
        #expect(started.source == "cli")
        #expect(started.requester == "tester")
        #expect(started.clientAddress == "198.18.0.7")
        #expect(started.domainName == "pcmk1")
        #expect(started.domainUUID == uuid)
        #expect(try harness.state("pcmk1") == .running)

        gate.open()
        let outcome = try await operation.value
        let finished = try #require(try await harness.row(outcome.operationID))
        #expect(finished.id == started.id)
        #expect(finished.state == .finished)
        #expect(finished.result == .success)
        #expect(finished.powerState == "off")
        #expect(finished.finishedAt != nil)
        #expect(finished.duration != nil)
    }

    @Test("if the intent row cannot be written, the request is refused and nothing is done")
    func refusedWithoutAudit() async throws {
        let harness = try await ServiceHarness(busyTimeout: .milliseconds(100))
        let holder = try Database(path: harness.store.path)
        try holder.execute("BEGIN EXCLUSIVE")
        await #expect {
            _ = try await harness.perform(.off, "pcmk1")
        } throws: { error in
            guard case FenceError.auditUnavailable(let reason) = error else { return false }
            return reason.contains("locked") || reason.contains("busy")
        }
        #expect(!harness.faulty.calls.contains { $0.hasPrefix("destroy") })
        #expect(try harness.state("pcmk1") == .running)
        try holder.execute("ROLLBACK")
        #expect(try await harness.rows().isEmpty)
    }

    @Test("an unreachable hypervisor is a clear, audited error; the service recovers when it comes back")
    func hypervisorUnavailableThenBack() async throws {
        let directory = try TemporaryDirectory()
        let worldPath = directory.file("world.xml")
        let harness = try await ServiceHarness(uri: "test://" + worldPath)

        await #expect(throws: FenceError.self) { try await harness.service.monitor() }
        await #expect {
            _ = try await harness.perform(.off, "pcmk1")
        } throws: { error in
            guard case FenceError.hypervisorUnavailable(let uri, _) = error else { return false }
            return uri == "test://" + worldPath
        }
        let row = try #require(try await harness.rows().first)
        #expect(row.result == .failure)
        #expect(row.errorCode == "hypervisor_unavailable")

        try FileManager.default.copyItem(atPath: Fixtures.path("cluster.xml"), toPath: worldPath)
        try await harness.service.monitor()
        #expect(try await harness.perform(.off, "pcmk1").power == .off)
    }

    @Test("reads do not leak libvirt references")
    func noLeakedReferences() async throws {
        do {
            let harness = try await ServiceHarness()
            _ = try await harness.service.domains()
            _ = try await harness.perform(.reboot, "transient1")
            _ = try await harness.perform(.status, "ghost").power
        } catch FenceError.domainNotFound {
        }
        #expect(LibvirtConnection.leakedReferences.load(ordering: .relaxed) == 0)
    }
}
