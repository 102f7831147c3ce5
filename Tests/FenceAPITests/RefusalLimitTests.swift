import FenceCore
import Foundation
import Store
import TestSupport
import Testing

/// Refusals are audited, but a client cannot grow the audit log faster than the documented rate: the rest
/// are counted in one summary row per client and window.
@Suite("Refusals: rate-limited rows, every refusal accounted for")
struct RefusalLimitTests {
    @Test("beyond the per-client limit, refusals are counted and recorded in one summary row when the window ends")
    func summaryRow() async throws {
        var configuration = FenceService.Configuration()
        configuration.refusalsPerClientPerMinute = 3
        configuration.refusalWindow = .seconds(10)
        try await APIHarness.withRunning(service: configuration) { api in
            for index in 0..<20 {
                let answer = try await api.curl(
                    "POST",
                    "/domains/pcmk\(index % 6 + 1)/off",
                    token: index == 7 ? "fgt_garbage" : nil
                )
                #expect(answer.status == 401)
            }
            let lastRefusal = ContinuousClock.now
            // Each window (10 s; a busy machine may need more than one for the 20 requests) has at most 3 rows
            // of its own; the rest are counted in summary rows, written when their window ends.
            func accounted() async throws -> (rows: [AuditRecord], individual: Int, summarized: Int) {
                let rows = try await api.harness.rows()
                let summarized = rows.filter { $0.errorCode == "refusals_not_recorded" }.compactMap { row in
                    row.message?.split(separator: " ").first.flatMap { Int($0) }
                }
                return (rows, rows.filter { $0.errorCode == "refused" }.count, summarized.reduce(0, +))
            }
            try await waitUntil("every refusal is in a row or a summary", limit: .seconds(40)) {
                let (_, individual, summarized) = try await accounted()
                return individual + summarized == 20
            }
            let (rows, individual, _) = try await accounted()
            #expect(individual >= 3 && individual < 20)
            #expect(rows.allSatisfy { $0.result == .refused && $0.clientAddress == "127.0.0.1" && $0.source == "http" })
            let summary = try #require(rows.last { $0.errorCode == "refusals_not_recorded" })
            #expect(
                summary.message?.contains(" more refusal") == true
                    && summary.message?.contains(" from http 127.0.0.1 between ") == true,
                "\(summary.message ?? "")"
            )
            #expect(summary.message?.contains("the last: off of 'pcmk") == true, "\(summary.message ?? "")")
            // Every refusal is counted in the metrics too.
            let metrics = try await api.curl("GET", "/metrics", token: api.ops)
            #expect(
                metrics.text.contains(#"fencegate_operations_total{action="off",result="refused",source="http"} 20"#),
                "\(metrics.text)"
            )
            #expect(
                metrics.text.contains("fencegate_audit_refusals_unrecorded_total \(20 - individual)"),
                "\(metrics.text)"
            )
            // A new window: rows of their own again. (The last window began by the last refusal at the latest:
            // on a loaded machine the twenty may have spanned two, the second still open when all are counted.)
            try await Task.sleep(until: lastRefusal + .seconds(11), clock: .continuous)
            #expect(try await api.curl("POST", "/domains/pcmk1/off").status == 401)
            #expect(try await accounted().individual == individual + 1)
        }
    }

    @Test("refusals of authenticated requests are each recorded: hiding a domain costs what an unknown one costs")
    func authenticatedRefusalsAreRecorded() async throws {
        var configuration = FenceService.Configuration()
        configuration.refusalsPerClientPerMinute = 3
        try await APIHarness.withRunning(service: configuration) { api in
            for _ in 0..<8 {
                #expect(try await api.curl("POST", "/domains/pcmk1/off", token: api.viewer).status == 403)  // scope
                #expect(try await api.curl("POST", "/domains/pcmk3/off", token: api.scoped).status == 404)  // hidden
                #expect(try await api.curl("POST", "/domains/pcmk9/off", token: api.scoped).status == 404)  // unknown
            }
            let rows = try await api.harness.rows()
            #expect(rows.filter { $0.result == .refused && $0.errorCode == "refused" }.count == 16)
            #expect(rows.filter { $0.result == .failure && $0.errorCode == "domain_not_found" }.count == 8)
            #expect(!rows.contains { $0.errorCode == "refusals_not_recorded" })
        }
    }

    @Test("Redfish: a system id that cannot name a domain is 404 before credentials are checked, and costs no row")
    func redfishInvalidIdentifier() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            let huge = String(repeating: "a" + String(repeating: "%CC%81", count: 10), count: 200)
            for path in ["/redfish/v1/Systems/\(huge)", "/redfish/v1/Systems/pcmk%0A1"] {
                let anonymous = try await api.curl("GET", path)
                #expect(anonymous.status == 404, "\(anonymous.text)")
                let reset = try await api.curl(
                    "POST",
                    path + "/Actions/ComputerSystem.Reset",
                    arguments: ["-H", "Content-Type: application/json", "--data", #"{"ResetType": "ForceOff"}"#]
                )
                #expect(reset.status == 404, "\(reset.text)")
            }
            #expect(try await api.harness.rows().isEmpty)
        }
    }
}

/// Fence races across front ends: a token names the domain of the node that holds it.
@Suite("Fence races over HTTP and Redfish")
struct HTTPFenceRaceTests {
    @Test("node1 fences node2 over Redfish; node2's fence of node1 over REST is refused with 409")
    func acrossFrontEnds() async throws {
        try await APIHarness.withRunning(redfish: true) { api in
            let tokens = AccessTokens(store: api.harness.store)
            let first = try await tokens.create(name: "node1", scope: .fence, domainPatterns: [], fromDomain: "pcmk1")
                .secret
            let second = try await tokens.create(name: "node2", scope: .fence, domainPatterns: [], fromDomain: "pcmk2")
                .secret
            let reset = try await api.curl(
                "POST",
                "/redfish/v1/Systems/pcmk2/Actions/ComputerSystem.Reset",
                basic: "node1:\(first)",
                arguments: ["-H", "Content-Type: application/json", "--data", #"{"ResetType": "ForceOff"}"#]
            )
            #expect(reset.status == 204, "\(reset.text)")
            let refused = try await api.curl("POST", "/domains/pcmk1/off", token: second)
            #expect(refused.status == 409, "\(refused.text)")
            #expect(refused.json["type"] as? String == "urn:fencegate:problem:requester-fenced")
            #expect(try api.harness.state("pcmk1") == .running)
            let rows = try await api.harness.rows()
            #expect(rows.map(\.source) == ["redfish", "http"])
            #expect(rows[1].message == "refused: requester was fenced by operation \(rows[0].id)")
        }
    }

    @Test("reads are rows too, but a read token's flood gets a summary row, not a row per request")
    func readSummaryRow() async throws {
        var configuration = FenceService.Configuration()
        configuration.readsPerClientPerMinute = 4
        // Long enough for the twelve reads to fall in one window even on a loaded machine (at 2 s, a CI
        // machine under load spread them over several windows, each within its limit).
        configuration.refusalWindow = .seconds(10)
        try await APIHarness.withRunning(service: configuration) { api in
            for index in 0..<12 {
                let answer = try await api.curl("GET", "/domains/pcmk\(index % 6 + 1)", token: api.viewer)
                #expect(answer.status == 200)  // answered, whatever its row
            }
            func accounted() async throws -> (individual: Int, summarized: Int, rows: [AuditRecord]) {
                let rows = try await api.harness.rows()
                let (individual, summarized) = readsAccounted(in: rows)
                return (individual, summarized, rows)
            }
            try await waitUntil("every read is in a row or a summary", limit: .seconds(40)) {
                let (individual, summarized, _) = try await accounted()
                return individual + summarized == 12
            }
            let (individual, _, rows) = try await accounted()
            #expect(individual >= 4 && individual < 12)
            #expect(rows.allSatisfy { $0.action == "status" && $0.requester == "viewer" && $0.result == .success })
            let summary = try #require(rows.last { $0.errorCode == "reads_not_recorded" })
            #expect(summary.message?.contains(" more read") == true, "\(summary.message ?? "")")
            #expect(summary.message?.contains(" from http viewer between ") == true, "\(summary.message ?? "")")
        }
    }
}
