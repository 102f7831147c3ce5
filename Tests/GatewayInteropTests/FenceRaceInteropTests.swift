import Foundation
import Store
import TestSupport
import Testing

/// Fence races with the unchanged fence_xvm: the gateway learns which domain a guest is from its address
/// (here from libvirt's interface addresses, which the test driver reports for the race fixture).
@Suite("Fence races through fence_xvm", requiresRoot)
struct FenceRaceInteropTests {
    @Test("two guests fence each other: the second, whose domain was just fenced, is refused; the winner keeps running")
    func mutualFence() async throws {
        // Guests at 198.18.0.11 and .31: the addresses the test driver reports for node1 and node2.
        let lab = try await GatewayLab(guests: 2, lastOctets: [11, 31])
        try await lab.startFencegate(uri: Fixtures.raceURI)
        // node2 (guest 1) fences node1 first; node1's agent (guest 0) is still there and fences node2.
        let first = try await lab.fenceXVM(guest: 1, ["-H", "node1", "-o", "off"])
        #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
        let second = try await lab.fenceXVM(guest: 0, ["-H", "node2", "-o", "off"])
        #expect(second.status == 1 && second.stdout.contains("Operation failed"), "\(second.stdout)\(second.stderr)")
        #expect(try await lab.fenceXVM(guest: 1, ["-H", "node2", "-o", "status"]).stdout == "Status: ON\n")

        let rows = try await lab.rows()
        #expect(rows.map(\.action) == ["off", "off", "status"])
        #expect(rows[0].result == .success && rows[0].domainName == "node1" && rows[0].requester == "198.18.0.31")
        #expect(rows[1].result == .refused && rows[1].domainName == "node2" && rows[1].requester == "198.18.0.11")
        #expect(rows[1].message == "refused: requester was fenced by operation \(rows[0].id)", "\(rows[1])")
        // Reads of a fenced node are never refused.
        #expect(try await lab.fenceXVM(guest: 0, ["-H", "node1", "-o", "status"]).stdout == "Status: OFF\n")
    }

    @Test("without arbitration (--fence-race-window 0) both are fenced, as before")
    func arbitrationOff() async throws {
        let lab = try await GatewayLab(guests: 2, lastOctets: [11, 31])
        try await lab.startFencegate(["--fence-race-window", "0"], uri: Fixtures.raceURI)
        #expect(try await lab.fenceXVM(guest: 1, ["-H", "node1", "-o", "off"]).status == 0)
        #expect(try await lab.fenceXVM(guest: 0, ["-H", "node2", "-o", "off"]).status == 0)
    }
}
