import Foundation
import Logging
import Store
import TestSupport
import Testing

/// `serve` deletes the audit rows older than the retention when it starts (and every hour), and says so.
@Suite("Audit retention in serve")
struct AuditRetentionCLITests {
    @Test("serve deletes expired reads and refusals at start, keeps fences, and logs how many")
    func serveDeletesAtStart() async throws {
        let fencegate = try FencegateBinary()
        let now = Date()
        var expired: Set<Int64> = []
        var kept: Set<Int64> = []
        do {
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let store = try await AuditStore.open(path: fencegate.database, logger: logger)
            func record(_ action: String, days: Double, _ result: AuditResult = .success) async throws -> Int64 {
                let at = now.addingTimeInterval(-days * 86_400)
                return try await store.record(
                    AuditIntent(
                        source: "http",
                        requester: "monitor",
                        clientAddress: "127.0.0.1",
                        target: "test",
                        domainName: "test",
                        domainUUID: nil,
                        action: action,
                        requestedAt: at
                    ),
                    AuditCompletion(result: result, powerState: "running", errorCode: nil, message: nil, finishedAt: at)
                )
            }
            // 1,200 expired reads: more than one transaction's worth.
            for index in 0..<1200 { expired.insert(try await record(index % 2 == 0 ? "status" : "list", days: 3)) }
            expired.insert(try await record("off", days: 3, .refused))
            kept.insert(try await record("status", days: 1))
            kept.insert(try await record("off", days: 400))
        }
        let server = try await RunningServer.start(
            fencegate,
            ["--uri", "test:///default", "--audit-read-retention-days", "2", "--log-level", "notice"]
        )
        try await waitUntil("serve logs the deletion", limit: .seconds(30)) {
            server.serve.stderr.contains("deleted audit rows older than the retention")
        }
        #expect(
            server.serve.stderr.contains("audit.rows_deleted=\(expired.count)"),
            "\(server.serve.stderr)"
        )
        #expect(server.serve.stderr.contains("changes kept forever, reads and refusals 2 days"))
        #expect(try await server.stop() == 0)
        let audit = try await fencegate.run(["audit", "--json", "--limit", "1000", "--uri", "test:///default"])
        #expect(audit.status == 0, "\(audit.stderr)")
        let operations = try #require(
            (try JSONSerialization.jsonObject(with: Data(audit.stdout.utf8)) as? [String: Any])?["operations"]
                as? [[String: Any]]
        )
        let ids = Set(operations.compactMap { ($0["id"] as? Int).map(Int64.init) })
        #expect(ids == kept, "\(ids.count) rows left")
    }
}
