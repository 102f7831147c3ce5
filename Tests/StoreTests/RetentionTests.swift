import Foundation
import Logging
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")
private let changing = ["off", "on", "reboot", "shutdown", "graceful-reboot", "nmi"]

@Suite("Audit store: deleting rows older than the retention")
struct RetentionTests {
    /// Rows `seconds` after the fixed time of `intent(_:at:)`, finished with `result`; returns their ids.
    private static func rows(
        _ store: AuditStore,
        _ specs: [(action: String, seconds: Double, result: AuditResult)]
    ) async throws -> [Int64] {
        var ids: [Int64] = []
        for spec in specs {
            ids.append(
                try await store.record(intent("pcmk1", at: spec.seconds, action: spec.action), completion(spec.result))
            )
        }
        return ids
    }

    private static func remaining(_ store: AuditStore) async throws -> Set<Int64> {
        Set(try await store.query(AuditQuery(limit: 1000)).records.map(\.id))
    }

    @Test("reads and refusals go by one rule, changes by the other; newer rows and operations under way stay")
    func rowClasses() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let old = try await Self.rows(
            store,
            [
                ("off", 1, .success), ("reboot", 2, .failure), ("nmi", 3, .timedOut), ("off", 4, .refused),
                ("status", 5, .success), ("list", 6, .success), ("monitor", 7, .failure), ("null", 8, .refused),
                ("request-9", 9, .failure),
            ]
        )
        // An operation under way since before the cutoff, and one left by a process that died.
        let underWay = try await store.begin(intent("pcmk2", at: 10, action: "off"))
        let readUnderWay = try await store.begin(intent("pcmk2", at: 10, action: "status"))
        let interrupted = try await store.begin(
            intent("pcmk3", at: 11, action: "on"),
            owner: ProcessIdentity(pid: 999_999, startTicks: 1)
        )
        #expect(try await store.recoverInterrupted() == 1)
        let new = try await Self.rows(
            store,
            [("status", 100, .success), ("off", 101, .success), ("off", 102, .refused)]
        )
        let cutoff = Date(timeIntervalSince1970: 1_800_000_000 + 50)

        let others = try await store.deleteFinishedRows(.others(actions: changing), requestedBefore: cutoff, limit: 100)
        #expect(others == 6)
        #expect(try await Self.remaining(store) == Set(old[0..<3] + [underWay, readUnderWay, interrupted] + new))

        let changes = try await store.deleteFinishedRows(
            .changes(actions: changing),
            requestedBefore: cutoff,
            limit: 100
        )
        #expect(changes == 4)
        #expect(try await Self.remaining(store) == Set([underWay, readUnderWay] + new))
        #expect(
            try await store.deleteFinishedRows(.changes(actions: changing), requestedBefore: cutoff, limit: 100) == 0
        )
    }

    @Test("a call deletes at most its limit")
    func inBatches() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let ids = try await Self.rows(store, (0..<10).map { ("status", Double($0), .success) })
        let kept = try await Self.rows(store, [("status", 2000, .success)])
        let cutoff = Date(timeIntervalSince1970: 1_800_000_000 + 1000)
        var counts: [Int] = []
        var left: [Set<Int64>] = []
        for _ in 0..<4 {
            counts.append(
                try await store.deleteFinishedRows(.others(actions: changing), requestedBefore: cutoff, limit: 4)
            )
            left.append(try await Self.remaining(store))
        }
        #expect(counts == [4, 4, 2, 0])
        #expect(left.map(\.count) == [7, 3, 1, 1])
        #expect(left[3] == Set(kept))
        #expect(left[0].isSubset(of: Set(ids + kept)))
    }

    @Test("the search for expired rows is served by an index, without a scan of the table or a sort")
    func servedByTheTimeIndex() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        _ = try await Self.rows(store, (0..<50).map { (["status", "off"][$0 % 2], Double($0), .success) })
        for rows in [AuditRowClass.others(actions: changing), .changes(actions: changing)] {
            let plan = try await store.retentionPlan(rows)
            #expect(plan.hasPrefix("SEARCH operations USING INDEX"), "\(rows): \(plan)")
            #expect(!plan.contains("SCAN"), "\(rows): \(plan)")
            #expect(!plan.contains("TEMP B-TREE"), "\(rows): \(plan)")
        }
    }
}
