import Foundation
import Store
import TestSupport
import Testing

@testable import FenceCore

@Suite("Fence actions have fence_virtd's libvirt semantics")
struct FenceSemanticsTests {
    @Test("off forces a running domain off; off again is success, noted as already off")
    func off() async throws {
        let harness = try await ServiceHarness()
        let outcome = try await harness.perform(.off, "pcmk1")
        #expect(outcome.power == .off)
        #expect(outcome.domain.state == .shutOff)
        #expect(outcome.note == nil)
        #expect(try harness.state("pcmk1") == .shutOff)

        let again = try await harness.perform(.off, "pcmk1")
        #expect(again.power == .off)
        #expect(again.note == "already off")
        #expect(harness.faulty.calls.filter { $0 == "destroy \(Fixtures.uuids["pcmk1"]!)" }.count == 1)
    }

    @Test("on starts a shut-off domain; on of a running one is success without a start")
    func on() async throws {
        let harness = try await ServiceHarness()
        let outcome = try await harness.perform(.on, "stopped1")
        #expect(outcome.power == .on)
        #expect(try harness.state("stopped1") == .running)

        let again = try await harness.perform(.on, "pcmk2")
        #expect(again.note == "already on")
        #expect(!harness.faulty.calls.contains("start \(Fixtures.uuids["pcmk2"]!)"))
    }

    @Test("status: shut off is off; running, paused are on")
    func status() async throws {
        let harness = try await ServiceHarness()
        #expect(try await harness.perform(.status, "pcmk1").power == .on)
        #expect(try await harness.perform(.status, "stopped1").power == .off)
        let paused = try await harness.perform(.status, "paused1")
        #expect(paused.power == .on)
        #expect(paused.domain.state == .paused)
        #expect(!harness.faulty.calls.contains { $0.hasPrefix("destroy") || $0.hasPrefix("start") })
    }

    @Test("reboot of a running persistent domain destroys it, waits until off, and starts it again")
    func rebootRunning() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk3"]!
        let outcome = try await harness.perform(.reboot, "pcmk3")
        #expect(outcome.power == .on)
        #expect(outcome.note == nil)
        #expect(try harness.state("pcmk3") == .running)
        let sequence = harness.faulty.calls.filter { $0.hasPrefix("destroy") || $0.hasPrefix("start") }
        #expect(sequence == ["destroy \(uuid)", "destroy \(uuid) returned", "start \(uuid)", "start \(uuid) returned"])
    }

    @Test("reboot of a domain that is off leaves it off and reports success")
    func rebootOff() async throws {
        let harness = try await ServiceHarness()
        let outcome = try await harness.perform(.reboot, "stopped1")
        #expect(outcome.power == .off)
        #expect(outcome.note == "was off; left off")
        #expect(try harness.state("stopped1") == .shutOff)
        #expect(!harness.faulty.calls.contains { $0.hasPrefix("start") })
    }

    @Test("reboot restarts a persistent domain from its own definition, not from the saved live XML")
    func rebootUsesPersistentDefinition() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk4"]!
        #expect(try harness.libvirt.maxMemoryKiB(ofDomain: uuid) == 262_144)
        // Change the persistent definition under the running domain; the live one keeps 256 MiB.
        try harness.libvirt.defineDomain(
            xml: """
                <domain type="test"><name>pcmk4</name><uuid>\(uuid)</uuid><memory>524288</memory>
                <vcpu>1</vcpu><os><type>hvm</type></os></domain>
                """
        )
        _ = try await harness.perform(.reboot, "pcmk4")
        #expect(try harness.libvirt.maxMemoryKiB(ofDomain: uuid) == 524_288)
        #expect(!harness.faulty.calls.contains { $0.hasPrefix("definition") || $0.hasPrefix("startTransient") })
    }

    @Test("reboot of a transient domain brings it back from its saved definition, still transient")
    func rebootTransient() async throws {
        let harness = try await ServiceHarness()
        let outcome = try await harness.perform(.reboot, "transient1")
        #expect(outcome.power == .on)
        let after = try harness.libvirt.domain(DomainTarget("transient1"))
        #expect(after.state == .running)
        #expect(after.isPersistent == false)
        #expect(after.uuid == Fixtures.uuids["transient1"])
        #expect(harness.faulty.calls.contains("startTransient *"))
    }

    @Test("reboot whose domain stays alive after destroy fails after the shut-off wait")
    func rebootDomainWillNotDie() async throws {
        var configuration = FenceService.Configuration()
        configuration.shutOffWait = .milliseconds(300)
        let harness = try await ServiceHarness(configuration: configuration)
        harness.faulty.inject(.ignore, into: .destroy, for: Fixtures.uuids["pcmk5"]!)
        await #expect {
            _ = try await harness.perform(.reboot, "pcmk5")
        } throws: { error in
            guard case FenceError.operationFailed(.reboot, "pcmk5", let reason) = error else { return false }
            return reason.contains("still running")
        }
        #expect(!harness.faulty.calls.contains { $0.hasPrefix("start") })
        let row = try #require(try await harness.rows().last)
        #expect(row.result == .failure)
        #expect(row.errorCode == "operation_failed")
    }

    @Test("reboot whose restart fails still reports success (the domain is fenced), with the failure noted")
    func rebootRestartFails() async throws {
        let harness = try await ServiceHarness()
        harness.faulty.inject(.fail, into: .start, for: Fixtures.uuids["pcmk6"]!)
        let outcome = try await harness.perform(.reboot, "pcmk6")
        #expect(outcome.power == .off)
        #expect(outcome.note?.contains("restart failed") == true)
        #expect(try harness.state("pcmk6") == .shutOff)
        let row = try #require(try await harness.rows().last)
        #expect(row.result == .success)
        #expect(row.powerState == "off")
        #expect(row.message?.contains("restart failed") == true)
    }

    @Test("a failed destroy of a running domain is a failure, but is forgiven if the domain is off anyway")
    func destroyErrors() async throws {
        let harness = try await ServiceHarness()
        let uuid = Fixtures.uuids["pcmk2"]!
        harness.faulty.inject(.fail, into: .destroy, for: uuid)
        await #expect {
            _ = try await harness.perform(.off, "pcmk2")
        } throws: { error in
            guard case FenceError.operationFailed(.off, "pcmk2", let reason) = error else { return false }
            return reason == "injected failure"
        }
        #expect(try harness.state("pcmk2") == .running)

        harness.faulty.inject(.failAfter, into: .destroy, for: uuid)
        let outcome = try await harness.perform(.off, "pcmk2")
        #expect(outcome.power == .off)
        #expect(try await harness.rows().map(\.result) == [.failure, .success])
    }
}

@Suite("Domains are found by name or UUID")
struct DomainLookupTests {
    @Test(
        "a canonical UUID, in either case, is looked up as a UUID",
        arguments: [
            "11111111-1111-4111-8111-111111111111", "11111111-1111-4111-8111-111111111111".uppercased(),
        ]
    )
    func byUUID(uuid: String) async throws {
        let harness = try await ServiceHarness()
        let outcome = try await harness.perform(.status, uuid)
        #expect(outcome.domain.name == "pcmk1")
        #expect(outcome.domain.uuid == "11111111-1111-4111-8111-111111111111")
    }

    @Test(
        "a name, or text that is not a canonical UUID, is looked up as a name",
        arguments: [
            ("pcmk1", true), ("PCMK1", false), ("11111111111141118111111111111111", false),
        ]
    )
    func byName(text: String, found: Bool) async throws {
        let harness = try await ServiceHarness()
        if found {
            #expect(try await harness.perform(.status, text).domain.uuid == Fixtures.uuids[text])
        } else {
            await #expect(throws: FenceError.domainNotFound(target: text)) {
                _ = try await harness.perform(.status, text)
            }
        }
    }

    @Test("an unknown domain is 'not found' for every action, and recorded as a failure")
    func unknown() async throws {
        let harness = try await ServiceHarness()
        for action in FenceAction.allCases {
            await #expect(throws: FenceError.domainNotFound(target: "ghost")) {
                _ = try await harness.perform(action, "ghost")
            }
        }
        let rows = try await harness.rows()
        #expect(rows.count == FenceAction.allCases.count)
        for row in rows {
            #expect(row.state == .finished)
            #expect(row.result == .failure)
            #expect(row.errorCode == "domain_not_found")
            #expect(row.domainUUID == nil)
            #expect(row.target == "ghost")
        }
    }

    @Test("the domain list has every defined domain, sorted by name, with state and persistence")
    func list() async throws {
        let harness = try await ServiceHarness()
        _ = try await harness.perform(.off, "pcmk2")
        let domains = try await harness.service.domains()
        #expect(domains.map(\.name) == Fixtures.uuids.keys.sorted())
        let byName = Dictionary(uniqueKeysWithValues: domains.map { ($0.name, $0) })
        #expect(byName["pcmk2"]?.state == .shutOff)
        #expect(byName["stopped1"]?.power == .off)
        #expect(byName["paused1"]?.state == .paused)
        #expect(byName["transient1"]?.isPersistent == false)
        #expect(byName["pcmk1"]?.uuid == Fixtures.uuids["pcmk1"])
        #expect(try await harness.service.domain("stopped1").state == .shutOff)
        #expect(try await harness.rows().count == 1)  // reads are not audited
    }
}
