import FenceCore
import Store
import TestSupport
import Testing

/// fence_xvm's `status` is a read like the others: a guest that asks in a loop gets its rows summarized, so
/// that it cannot fill the disk (and so stop every fence, which needs its row first).
@Suite("Audit: a guest's status loop gets a summary row, not a row per request")
struct StatusRowLimitTests {
    @Test(
        "statuses beyond the per-requester limit are counted in a summary row, on both paths",
        arguments: [false, true]
    )
    func summarized(atOnce: Bool) async throws {
        var configuration = FenceService.Configuration()
        configuration.readsPerClientPerMinute = 4
        // Long enough for the twelve statuses to fall in one window even on a loaded machine.
        configuration.refusalWindow = .seconds(10)
        let harness = try await ServiceHarness(configuration: configuration)
        let origin = RequestOrigin(frontEnd: .multicast, requester: "198.18.0.11", clientAddress: "198.18.0.11")
        _ = try harness.state("pcmk1")  // a hypervisor connection open, for `statusAtOnce`
        for index in 0..<12 {
            let request = FenceRequest(action: .status, target: DomainTarget("pcmk\(index % 6 + 1)"), origin: origin)
            if atOnce {
                #expect(harness.service.statusAtOnce(request, since: .now)?.state == .running)
            } else {
                #expect(try await harness.service.status(request).state == .running)
            }
        }
        func accounted() async throws -> (individual: Int, summarized: Int, rows: [AuditRecord]) {
            let rows = try await harness.rows()
            let (individual, summarized) = readsAccounted(in: rows)
            return (individual, summarized, rows)
        }
        try await waitUntil("every status is in a row or a summary", limit: .seconds(40)) {
            let (individual, summarized, _) = try await accounted()
            return individual + summarized == 12
        }
        let (individual, _, rows) = try await accounted()
        #expect(individual >= 4 && individual < 12)
        #expect(rows.allSatisfy { $0.action == "status" && $0.requester == "198.18.0.11" && $0.result == .success })
    }
}
