import Foundation
import Logging
import Store
import TestSupport
import Testing

@testable import FenceCore

/// Fence races: when two nodes fence each other, the first request wins and the other is refused, since its
/// requester is being fenced or was just fenced. On the cluster fixture, with the requesting domain named
/// as a token's `--from` names it (the gateway's address path is tested with the real fence_xvm).
@Suite("Fence races: a node that is being fenced, or was just fenced, cannot fence")
struct FenceRaceTests {
    static func request(_ action: FenceAction, _ target: String, from sender: String?) -> FenceRequest {
        FenceRequest(
            action: action,
            target: DomainTarget(target),
            origin: RequestOrigin(
                frontEnd: .http,
                requester: "node",
                sendingDomain: sender.map { .named(DomainTarget($0)) }
            )
        )
    }

    @Test("two nodes fence each other while the first fence is under way: the first wins, the second is refused")
    func mutualFenceWhileUnderWay() async throws {
        let harness = try await ServiceHarness()
        // pcmk1's teardown is slow (its destroy waits at the gate): it is still alive when it asks.
        let gate = Gate()
        harness.faulty.inject(.hang(gate), into: .destroy, for: Fixtures.uuids["pcmk1"]!)
        let first = Task { try await harness.service.perform(Self.request(.off, "pcmk1", from: "pcmk2")) }
        try await waitUntil("pcmk1's fence is under way") { gate.arrived == 1 }
        await #expect {
            _ = try await harness.service.perform(Self.request(.off, "pcmk2", from: "pcmk1"))
        } throws: { error in
            guard case FenceError.requesterFenced(_, let requester, _) = error else { return false }
            return requester == "pcmk1"
        }
        gate.open()
        #expect(try await first.value.power == .off)
        #expect(try harness.state("pcmk2") == .running)
        let rows = try await harness.rows()
        #expect(rows.map(\.result) == [.success, .refused])
        #expect(rows[1].message == "refused: requester was fenced by operation \(rows[0].id)", "\(rows[1])")
        #expect(rows[1].errorCode == "requester_fenced" && rows[1].domainName == "pcmk2")
    }

    @Test("a node fenced moments ago cannot fence; after the window it can; its reads and ons never wait")
    func fencedWithinTheWindow() async throws {
        var configuration = FenceService.Configuration()
        // Long enough that the refusal below lands inside it on a loaded CI machine (2 s did not, once).
        configuration.races.window = .seconds(10)
        let harness = try await ServiceHarness(configuration: configuration)
        let fence = try await harness.service.perform(Self.request(.reboot, "pcmk3", from: "pcmk4"))
        let fenceEnded = ContinuousClock.now  // the window runs from the fence's end, which is before this
        await #expect(throws: FenceError.self) {
            _ = try await harness.service.perform(Self.request(.off, "pcmk4", from: "pcmk3"))
        }
        // Status, on, and other domains' fences are not affected.
        #expect(try await harness.service.perform(Self.request(.status, "pcmk4", from: "pcmk3")).power == .on)
        #expect(try await harness.service.perform(Self.request(.on, "stopped1", from: "pcmk3")).power == .on)
        #expect(try await harness.service.perform(Self.request(.off, "pcmk6", from: "pcmk5")).power == .off)
        // A request whose sender is unknown is decided as always.
        #expect(try await harness.service.perform(Self.request(.off, "pcmk5", from: nil)).power == .off)
        let refused = try #require(try await harness.rows().first { $0.result == .refused })
        #expect(refused.message == "refused: requester was fenced by operation \(fence.operationID)")
        try await Task.sleep(until: fenceEnded + configuration.races.window + .milliseconds(200))
        #expect(try await harness.service.perform(Self.request(.off, "pcmk4", from: "pcmk3")).power == .off)
    }

    @Test("a fence that failed did not fence: its target's own requests go through")
    func failedFenceDoesNotCount() async throws {
        let harness = try await ServiceHarness()
        // The destroy fails and the domain stays running: a failure, nothing fenced.
        harness.faulty.inject(.fail, into: .destroy, for: Fixtures.uuids["pcmk1"]!)
        await #expect(throws: FenceError.self) {
            _ = try await harness.service.perform(Self.request(.off, "pcmk1", from: "pcmk2"))
        }
        #expect(try await harness.service.perform(Self.request(.off, "pcmk2", from: "pcmk1")).power == .off)
    }

    @Test("a preferred node wins a race that a peer started first, within the grace period")
    func preferredNodeWins() async throws {
        var configuration = FenceService.Configuration()
        configuration.races.preferred = ["pcmk1"]
        configuration.races.grace = .seconds(10)  // pcmk1's request must arrive within it, even on a loaded machine
        let harness = try await ServiceHarness(configuration: configuration)
        // pcmk2 asks first to fence the preferred pcmk1: that request waits the grace period ...
        let fromPeer = Task { try await harness.service.perform(Self.request(.off, "pcmk1", from: "pcmk2")) }
        try await waitUntil("pcmk2's request has its row") { try await harness.rows().count == 1 }
        // ... while pcmk1's own request, arriving after it, is decided at once and fences pcmk2.
        #expect(try await harness.service.perform(Self.request(.off, "pcmk2", from: "pcmk1")).power == .off)
        await #expect {
            _ = try await fromPeer.value
        } throws: { error in
            if case FenceError.requesterFenced = error { return true }
            return false
        }
        #expect(try harness.state("pcmk1") == .running)
        #expect(try harness.state("pcmk2") == .shutOff)
    }

    @Test("the sending domain of a guest's address: from the configuration, else from libvirt's interface addresses")
    func sendingDomainByAddress() async throws {
        var configuration = FenceService.Configuration()
        configuration.races.requesters = ["198.18.0.99": "node3"]
        let harness = try await ServiceHarness(uri: Fixtures.raceURI, configuration: configuration)
        func sender(_ address: String) async -> String? {
            let request = FenceRequest(
                action: .off,
                target: "node3",
                origin: RequestOrigin(frontEnd: .multicast, requester: address, sendingDomain: .address(address))
            )
            return await harness.service.sendingDomain(of: request, deadline: .now + .seconds(10))?.name
        }
        // The test driver reports node1's and node2's addresses (virDomainInterfaceAddresses).
        #expect(await sender("198.18.0.11") == "node1")
        #expect(await sender("198.18.0.31") == "node2")
        #expect(await sender("198.18.0.99") == "node3")  // configured
        #expect(await sender("198.18.0.12") == nil)  // nobody's
        #expect(await sender("::ffff:198.18.0.11") == "node1")  // the same address, written otherwise
    }

    @Test("who sent a fence is found without waiting for a destroy under way, which holds its domain in libvirt")
    func requesterFoundWithoutWaitingForADestroy() async throws {
        var configuration = FenceService.Configuration()
        configuration.races.recordsGuestAddresses = true
        configuration.operationTimeout = .seconds(30)  // a wait for node2's destroy fails the fence
        let harness = try await ServiceHarness(uri: Fixtures.raceURI, configuration: configuration)
        func node(_ index: Int) -> String { "d1d1d1d1-0000-4000-8000-00000000000\(index)" }
        func request(_ target: String, from origin: SendingDomain) -> FenceRequest {
            FenceRequest(
                action: .off,
                target: DomainTarget(target),
                origin: RequestOrigin(frontEnd: .multicast, requester: "guest", sendingDomain: origin)
            )
        }
        // node2's destroy hangs (a QEMU that dies slowly). Its addresses were read when its fence began.
        let gate = Gate()
        harness.faulty.inject(.hang(gate), into: .destroy, for: node(2))
        let first = Task { try await harness.service.perform(request("node2", from: .address("198.18.0.11"))) }
        try await waitUntil("node2's fence is in its destroy") { gate.arrived == 1 }
        // From now on, as libvirt while it kills a domain's process: every call that needs node2 waits for the
        // destroy, and a listing of all domains needs every domain.
        for (method, key) in [(FaultyHypervisor.Method.domains, "*"), (.addresses, node(2)), (.domain, "node2")] {
            harness.faulty.inject(.hang(gate), into: method, for: key)
        }
        // node1 (by its guest's address) fences node3: its requester cannot lose a race, nothing waits.
        #expect(try await harness.service.perform(request("node3", from: .address("198.18.0.11"))).power == .off)
        // node2 asks, by its guest's address and by name: refused at once, from what the ledger knows.
        for origin in [SendingDomain.address("198.18.0.31"), .named("node2")] {
            await #expect {
                _ = try await harness.service.perform(request("node1", from: origin))
            } throws: { error in
                guard case FenceError.requesterFenced(_, let requester, _) = error else { return false }
                return requester == "node2"
            }
        }
        #expect(gate.arrived == 1, "a call waited for node2's destroy: \(harness.faulty.calls)")
        gate.open()
        #expect(try await first.value.power == .off)
        #expect(try harness.libvirt.state(ofDomain: node(1)) == .running)
    }

    @Test("two guests fence each other at the same moment, known by their addresses: exactly one gets through")
    func simultaneousMutualFenceByAddress() async throws {
        var configuration = FenceService.Configuration()
        configuration.races.recordsGuestAddresses = true
        configuration.races.lookupTimeout = .seconds(30)  // the reads wait at the gate, however loaded the machine
        let harness = try await ServiceHarness(uri: Fixtures.raceURI, configuration: configuration)
        // Both fences read their target's addresses at once and wait there for each other: from then on they
        // are decided in the same instant.
        let gate = Gate()
        for index in 1...2 {
            harness.faulty.inject(.hang(gate), into: .addresses, for: "d1d1d1d1-0000-4000-8000-00000000000\(index)")
        }
        func fence(_ target: String, from address: String) -> Task<FenceOutcome, any Error> {
            Task {
                try await harness.service.perform(
                    FenceRequest(
                        action: .off,
                        target: DomainTarget(target),
                        origin: RequestOrigin(
                            frontEnd: .multicast,
                            requester: address,
                            sendingDomain: .address(address)
                        )
                    )
                )
            }
        }
        let fences = [fence("node2", from: "198.18.0.11"), fence("node1", from: "198.18.0.31")]
        try await waitUntil("both fences read their target's addresses") { gate.arrived == 2 }
        gate.open()
        var outcomes: [String] = []
        for fence in fences {
            switch await fence.result {
            case .success(let outcome): outcomes.append("fenced \(outcome.domain.name)")
            case .failure(FenceError.requesterFenced): outcomes.append("refused")
            case .failure(let error): outcomes.append("failed: \(error)")
            }
        }
        #expect(
            outcomes.sorted() == ["fenced node1", "refused"] || outcomes.sorted() == ["fenced node2", "refused"],
            "\(outcomes)"
        )
    }

    @Test(
        "the ledger: exactly one of two nodes fencing each other gets through, from many threads at once",
        arguments: ["by address", "by name", "by domain"]
    )
    func ledgerDecidesOnce(sender: String) async {
        let a = DomainInfo(name: "a", uuid: "aaaaaaaa-0000-4000-8000-000000000001", state: .running, isPersistent: true)
        let b = DomainInfo(name: "b", uuid: "bbbbbbbb-0000-4000-8000-000000000002", state: .running, isPersistent: true)
        let addresses = [a.uuid: "198.18.0.11", b.uuid: "198.18.0.12"]
        func requester(_ domain: DomainInfo) -> FenceLedger.Requester {
            switch sender {
            case "by address": .address(addresses[domain.uuid]!)
            case "by name": .named(DomainTarget(domain.name))
            default: .domain(domain)
            }
        }
        for _ in 0..<200 {
            let ledger = FenceLedger()
            // As the service does: the target's addresses read first; quietly if nothing is being fenced, else
            // with the requester looked for in the same step as the mark.
            func fence(_ target: DomainInfo, from sender: DomainInfo, operation: Int64) -> Bool {
                let targetAddresses = [addresses[target.uuid]!]
                return ledger.claimIfQuiet(
                    target: target,
                    addresses: targetAddresses,
                    by: operation,
                    window: .seconds(60)
                )
                    || ledger.claim(
                        target: target,
                        addresses: targetAddresses,
                        by: operation,
                        requester: requester(sender),
                        window: .seconds(60)
                    ) == nil
            }
            let winners = await withTaskGroup(of: Bool.self) { group in
                group.addTask { fence(b, from: a, operation: 1) }
                group.addTask { fence(a, from: b, operation: 2) }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(winners == 1)
        }
    }
}
