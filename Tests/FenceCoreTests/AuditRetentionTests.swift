import FenceCore
import Foundation
import Store
import TestSupport
import Testing

/// The audit log keeps fences for their retention and reads and refusals for theirs, so that it cannot fill the
/// disk in the long run (and so stop every fence, which needs its row first).
@Suite("Audit: rows older than the retention are deleted")
struct AuditRetentionTests {
    private static let day: TimeInterval = 86_400

    /// A finished row of `action` by a guest, `age` seconds before `now`.
    private static func record(
        _ store: AuditStore,
        _ action: String,
        age: TimeInterval,
        result: AuditResult = .success,
        now: Date
    ) async throws -> Int64 {
        let requestedAt = now.addingTimeInterval(-age)
        return try await store.record(
            AuditIntent(
                source: "multicast",
                requester: "198.18.0.11",
                clientAddress: "198.18.0.11",
                target: "pcmk1",
                domainName: "pcmk1",
                domainUUID: nil,
                action: action,
                requestedAt: requestedAt
            ),
            AuditCompletion(
                result: result,
                powerState: "running",
                errorCode: nil,
                message: nil,
                finishedAt: requestedAt
            )
        )
    }

    @Test("each rule deletes its own rows, in batches, and the count shows in the metrics")
    func rulesAndBatches() async throws {
        var configuration = FenceService.Configuration()
        configuration.auditRetention = AuditRetention(changes: .seconds(30 * 86_400), others: .seconds(86_400))
        configuration.auditRetention.batchSize = 7
        configuration.auditRetention.pause = .milliseconds(1)
        let harness = try await ServiceHarness(configuration: configuration)
        let now = Date()
        // Today's rows, through the service: a fence and a read.
        _ = try await harness.perform(.off, "pcmk2")
        _ = try await harness.perform(.status, "pcmk3")
        var expired: [Int64] = []
        var kept: [Int64] = []
        for index in 0..<20 {
            expired.append(
                try await Self.record(
                    harness.store,
                    ["status", "list", "monitor"][index % 3],
                    age: 2 * Self.day,
                    now: now
                )
            )
        }
        expired.append(try await Self.record(harness.store, "off", age: 2 * Self.day, result: .refused, now: now))
        expired.append(try await Self.record(harness.store, "reboot", age: 40 * Self.day, now: now))
        expired.append(try await Self.record(harness.store, "nmi", age: 31 * Self.day, result: .failure, now: now))
        kept.append(try await Self.record(harness.store, "off", age: 10 * Self.day, now: now))
        kept.append(try await Self.record(harness.store, "status", age: 0.5 * Self.day, now: now))
        await harness.store.commitDeferredRows()
        let before = Set(try await harness.rows().map(\.id))
        let today = before.subtracting(expired + kept)
        #expect(today.count == 2, "the fence's row and the read's")

        let deleted = try await harness.service.deleteExpiredAuditRows(now: now)
        #expect(deleted == expired.count)
        #expect(Set(try await harness.rows().map(\.id)) == today.union(kept))
        let metrics = String(decoding: harness.service.metrics.exposition(), as: UTF8.self)
        #expect(metrics.contains("fencegate_audit_rows_deleted_total \(expired.count)\n"), "\(metrics)")
        #expect(try await harness.service.deleteExpiredAuditRows(now: now) == 0)
    }

    @Test("with both rules off, nothing is deleted, however old")
    func keptForever() async throws {
        var configuration = FenceService.Configuration()
        configuration.auditRetention = AuditRetention(changes: nil, others: nil)
        let harness = try await ServiceHarness(configuration: configuration)
        let now = Date()
        for action in ["status", "off"] {
            _ = try await Self.record(harness.store, action, age: 3650 * Self.day, now: now)
        }
        #expect(try await harness.service.deleteExpiredAuditRows(now: now) == 0)
        #expect(try await harness.rows().count == 2)
        #expect(configuration.auditRetention.description == "changes kept forever, reads and refusals forever")
        #expect(AuditRetention().description == "changes kept forever, reads and refusals 90 days")
    }
}
