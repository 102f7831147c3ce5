import Dispatch
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")

/// A store holding `count` status rows of 16 domains, one a second: one row written by the store, copied by
/// SQLite itself (quicker than writing each).
private func largeStore(_ directory: TemporaryDirectory, rows count: Int) async throws -> AuditStore {
    let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
    try await store.insertFinished([(intent("pcmk0", at: 0, action: "status"), completion())])
    let copied = AuditColumn.allCases.filter { $0 != .id }.map(\.rawValue)
    let values = copied.map { column in
        switch column {
        case AuditColumn.requestedAt.rawValue, AuditColumn.finishedAt.rawValue: "\(column) + n.i * 1000000"
        case AuditColumn.domainName.rawValue, AuditColumn.target.rawValue: "'pcmk' || (n.i % 16)"
        default: column
        }
    }
    let database = try Database(path: store.path)
    try database.query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            + "INSERT INTO operations (\(copied.joined(separator: ", "))) "
            + "SELECT \(values.joined(separator: ", ")) FROM operations, n WHERE operations.id = 1",
        [.integer(Int64(count - 1))]
    )
    return store
}

/// A query that no index serves and that matches nothing, so that it reads every row: the domain patterns
/// of a token limited to domains, none of which has rows.
private let everyRowQuery = AuditQuery(domainPatterns: ["*-none-*"])

@Suite("Audit reader: queries off the store's queue, within a time limit")
struct AuditReaderTests {
    @Test("a query that reads every row holds no write: fences' rows are written while it runs")
    func queriesHoldNoWrite() async throws {
        let directory = try TemporaryDirectory()
        let store = try await largeStore(directory, rows: 20_000)
        let reader = try store.reader(timeLimit: .seconds(120))
        // The query is held mid-scan, standing in for one over millions of rows (whose length would
        // depend on the machine): the writes below must go through while it is.
        let held = Atomic<Bool>(false)
        let release = DispatchSemaphore(value: 0)
        await reader.observeQueryProgress {
            if !held.exchange(true, ordering: .acquiringAndReleasing) { release.wait() }
        }
        async let query = reader.query(everyRowQuery)
        // Released whatever happens below: the reader's thread waits for it, and the query with it.
        defer { release.signal() }
        try await waitUntil("the query runs") { held.load(ordering: .acquiring) }
        let written = Atomic<Int>(0)
        let writes = Task {
            for index in 0..<5 {
                let id = try await store.begin(intent("pcmk1", at: 1_000_000 + Double(index)))
                try await store.complete(id, completion())
                written.add(1, ordering: .releasing)
            }
        }
        // On the store's own queue (as before), the query held every write until it ended.
        let wroteWhileHeld =
            (try? await waitUntil("five fences' rows are written while the query runs") {
                written.load(ordering: .acquiring) == 5
            }) != nil
        release.signal()
        #expect(wroteWhileHeld, "\(written.load(ordering: .acquiring)) of 5 written while the query ran")
        try await writes.value
        #expect(try await query.records.isEmpty)
    }

    @Test("a query still running at the time limit is stopped; the reader then answers the next query")
    func timeLimit() async throws {
        let directory = try TemporaryDirectory()
        let store = try await largeStore(directory, rows: 200_000)
        let reader = try store.reader(timeLimit: .milliseconds(1))
        do {
            _ = try await reader.query(everyRowQuery)
            Issue.record("a query over 200,000 rows finished within 1 ms")
        } catch AuditStoreError.queryStopped(let limit) {
            #expect(limit == .milliseconds(1))
        }
        // The statement stopped is run again, and stopped again (not left in a failed state).
        do {
            _ = try await reader.query(everyRowQuery)
            Issue.record("a query over 200,000 rows finished within 1 ms")
        } catch AuditStoreError.queryStopped {
        }
        // A narrow query fits in the same limit, and the limit does not outlive the query it was set for.
        #expect(try await reader.operation(id: 7)?.id == 7)
        let unlimited = try store.reader(timeLimit: .seconds(60))
        #expect(try await unlimited.query(everyRowQuery).records.isEmpty)
    }

    @Test("the reader sees every committed row, rows of requests that changed nothing included")
    func seesCommittedRows() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(
            path: directory.file("audit.db"),
            deferredCommitDelay: .seconds(60),
            logger: logger
        )
        let reader = try store.reader()
        let id = try await store.begin(intent("pcmk2", at: 1, action: "off"))
        #expect(try await reader.operation(id: id)?.state == .started)
        try await store.complete(id, completion())
        #expect(try await reader.operation(id: id)?.state == .finished)
        // Waiting for a commit a minute away: a query commits it first.
        await store.recordEventually(intent("pcmk2", at: 2, action: "status"), completion())
        #expect(try await reader.query(AuditQuery(limit: 10)).records.map(\.action) == ["status", "off"])
    }
}
