import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")

private func read(_ action: String = "status", domain: String = "pcmk1") -> (AuditIntent, AuditCompletion) {
    (
        AuditIntent(
            source: "multicast",
            requester: "198.18.0.10",
            clientAddress: "198.18.0.10",
            target: domain,
            domainName: domain,
            domainUUID: nil,
            action: action,
            requestedAt: Date()
        ),
        AuditCompletion(result: .success, powerState: "on", errorCode: nil, message: nil, finishedAt: Date())
    )
}

/// A store whose reads wait `delay` for a commit, and a second connection to the same file (as another
/// process would have), which sees only what is committed.
private func storeAndObserver(
    delay: Duration,
    in directory: TemporaryDirectory
) async throws -> (store: AuditStore, observer: AuditStore) {
    let path = directory.file("audit.db")
    let store = try await AuditStore.open(path: path, deferredCommitDelay: delay, logger: logger)
    return (store, try await AuditStore.open(path: path, logger: logger))
}

/// Rows of requests that changed nothing are recorded with the next commit instead of a commit of their own.
@Suite("Audit store: rows of reads go with the next commit")
struct DeferredRowsTests {
    @Test("a read's row: this store sees it at once; another connection once the commit delay has passed")
    func committedWithinTheDelay() async throws {
        let directory = try TemporaryDirectory()
        let (store, observer) = try await storeAndObserver(delay: .seconds(2), in: directory)
        let (intent, completion) = read()
        await store.recordEventually(intent, completion)
        // Not on disk yet: the commit waits for the delay (or another write).
        #expect(try await observer.query(AuditQuery(limit: 10)).records.isEmpty)
        try await waitUntil("the row is committed", limit: .seconds(10)) {
            try await observer.query(AuditQuery(limit: 10)).records.count == 1
        }
        let row = try #require(try await observer.query(AuditQuery(limit: 10)).records.first)
        #expect(row.action == "status" && row.state == .finished && row.result == .success && row.powerState == "on")

        // This store's own readers see its waiting rows at once (they are committed before the query).
        await store.recordEventually(read("list").0, read("list").1)
        #expect(try await store.query(AuditQuery(limit: 10)).records.map(\.action) == ["list", "status"])
        #expect(try await observer.query(AuditQuery(limit: 10)).records.count == 2)
    }

    @Test("a durable write takes the waiting rows into its commit; shutdown commits the rest")
    func rideAlongAndShutdown() async throws {
        let directory = try TemporaryDirectory()
        // A delay no test waits for: only a commit of another write, or the shutdown's, can write these rows.
        let (store, observer) = try await storeAndObserver(delay: .seconds(3600), in: directory)
        for _ in 0..<3 { await store.recordEventually(read().0, read().1) }
        let id = try await store.begin(read("off").0)
        // Durable when begin returns, and the three reads with it, in the same transaction.
        #expect(try await observer.query(AuditQuery(limit: 10)).records.count == 4)
        #expect(try await observer.operation(id: id)?.state == .started)
        // The reads came first, and so do their ids: ids follow the order of the requests.
        #expect(id == 4)

        await store.recordEventually(read("monitor").0, read("monitor").1)
        #expect(try await observer.query(AuditQuery(limit: 10)).records.count == 4)
        await store.commitDeferredRows()
        #expect(try await observer.query(AuditQuery(limit: 10)).records.first?.action == "monitor")
    }

    @Test("many waiting rows start a commit at once, without waiting for the delay")
    func manyRowsCommitEarly() async throws {
        let directory = try TemporaryDirectory()
        let (store, observer) = try await storeAndObserver(delay: .seconds(3600), in: directory)
        for _ in 0..<AuditStore.deferredRowsPerCommit { await store.recordEventually(read().0, read().1) }
        try await waitUntil("the full batch is committed", limit: .seconds(20)) {
            try await observer.latestID() == Int64(AuditStore.deferredRowsPerCommit)
        }
    }

    @Test("while the disk is held (another connection's write lock), readers wait at the backlog; none is lost")
    func backlogHoldsReadersBack() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(
            path: path,
            busyTimeout: .seconds(120),
            deferredCommitDelay: .seconds(3600),
            logger: logger
        )
        // Another connection holds the write lock: every commit of the store waits (a stalled disk).
        let blocker = try Database(path: path)
        try blocker.execute("BEGIN IMMEDIATE")
        let total = 2 * AuditStore.deferredRowsBacklog
        let given = Atomic<Int>(0)
        let reader = Task {
            for _ in 0..<total {
                await store.recordEventually(read().0, read().1)
                given.add(1, ordering: .relaxed)
            }
        }
        try await waitUntil("the backlog is reached") {
            given.load(ordering: .relaxed) >= AuditStore.deferredRowsBacklog - 1
        }
        // Without the backlog the reader would give all its rows in well under a second.
        try await Task.sleep(for: .seconds(1))
        #expect(given.load(ordering: .relaxed) < total, "the reader did not wait for the stalled commits")
        try blocker.execute("COMMIT")
        await reader.value
        await store.commitDeferredRows()
        #expect(try await store.latestID() == Int64(total))
    }
}
