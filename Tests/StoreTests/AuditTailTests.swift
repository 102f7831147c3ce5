import Foundation
import Logging
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")

/// Every record `tail` returns until it has nothing new.
private func drain(_ tail: inout AuditTail, _ store: AuditStore) async throws -> [Int64] {
    var ids: [Int64] = []
    while true {
        let batch = try await tail.next(store)
        if batch.isEmpty { return ids }
        #expect(batch.allSatisfy { $0.state != .started })
        ids += batch.map(\.id)
    }
}

@Suite("Audit store: export order and following")
struct AuditTailTests {
    @Test(
        "oldest first walks every row once across page boundaries, by request time then id",
        arguments: [1, 7, 1000]
    )
    func oldestFirstPages(limit: Int) async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        // 2,345 rows; request times go back and forth, and many share one, so the order is not the id order.
        let rows = (0..<2345).map { index in
            (intent(index % 2 == 0 ? "even" : "odd", at: Double((index * 7) % 500)), completion())
        }
        try await store.insertFinished(rows)
        var query = AuditQuery(limit: limit)
        query.order = .oldestFirst
        var seen: [AuditRecord] = []
        repeat {
            let page = try await store.query(query)
            #expect(page.records.count <= limit)
            seen += page.records
            query.cursor = page.nextCursor
        } while query.cursor != nil
        #expect(seen.count == 2345)
        #expect(Set(seen.map(\.id)).count == 2345)
        let keys = seen.map { ($0.requestedAt.microsecondsSince1970, $0.id) }
        #expect(zip(keys, keys.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test("oldest first is served by the same indexes, with no sort step")
    func oldestFirstUsesIndexes() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        for var query in [AuditQuery(), AuditQuery(domain: "pcmk1"), AuditQuery(action: "off", since: Date())] {
            query.order = .oldestFirst
            query.cursor = AuditCursor(requestedAtMicroseconds: 5, id: 5)
            let plan = try await store.queryPlan(query)
            #expect(plan.contains("USING INDEX operations_by_"), "\(plan)")
            #expect(!plan.contains("TEMP B-TREE"), "\(plan)")
        }
    }

    @Test("following returns each operation once, when it ends, whatever order operations end in")
    func outOfOrderCompletion() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let done = try await store.record(intent("pcmk1", at: 1), completion())
        let runningBefore = try await store.begin(intent("pcmk1", at: 2))
        var tail = try await AuditTail(store, query: AuditQuery(domain: "pcmk1"), includingExisting: true)
        // The backlog holds only what had ended; the running row waits for its end.
        #expect(try await drain(&tail, store) == [done])

        let first = try await store.begin(intent("pcmk1", at: 3))
        let second = try await store.begin(intent("pcmk1", at: 4))
        let other = try await store.record(intent("pcmk2", at: 5), completion())
        #expect(try await drain(&tail, store).isEmpty)
        try await store.complete(second, completion())
        #expect(try await drain(&tail, store) == [second])
        try await store.complete(runningBefore, completion(.failure))
        try await store.complete(first, completion())
        #expect(try await drain(&tail, store) == [runningBefore, first])
        #expect(try await drain(&tail, store).isEmpty)
        _ = other
    }

    @Test("a result filter waits for the result; --new-only skips what ended before")
    func resultFilterAndNewOnly() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        _ = try await store.record(intent("pcmk1", at: 1), completion(.failure))
        let runningBefore = try await store.begin(intent("pcmk1", at: 2))
        var failures = try await AuditTail(store, query: AuditQuery(result: .failure), includingExisting: false)
        #expect(try await drain(&failures, store).isEmpty)
        let succeeds = try await store.begin(intent("pcmk1", at: 3))
        let fails = try await store.begin(intent("pcmk1", at: 4))
        try await store.complete(succeeds, completion(.success))
        try await store.complete(fails, completion(.failure))
        try await store.complete(runningBefore, completion(.failure))
        #expect(try await drain(&failures, store) == [runningBefore, fails])
    }

    @Test("new rows are read a page at a time, every one once, past the page size")
    func manyNewRows() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        var tail = try await AuditTail(store, query: AuditQuery(), includingExisting: true)
        #expect(try await drain(&tail, store).isEmpty)
        try await store.insertFinished((0..<2500).map { (intent("pcmk1", at: Double($0)), completion()) })
        let ids = try await drain(&tail, store)
        #expect(ids == Array(1...2500))
    }

    @Test(
        "a commit by another connection is signalled by inotify, well before the fallback",
        .timeLimit(.minutes(1))
    )
    func changeSignals() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(path: path, logger: logger)
        let writer = try await AuditStore.open(path: path, logger: logger)
        let changes = try AuditLogChanges(databasePath: path, fallback: .seconds(3600))
        var signals = changes.signals.makeAsyncIterator()
        _ = try await writer.record(intent("pcmk1", at: 1), completion())
        // The stream keeps the latest signal, so one sent before this wait is not lost.
        #expect(await signals.next() != nil)
        _ = store
    }

    @Test(
        "a commit by a writer that stays open (as serve) is read on its signals, with no fallback re-check",
        .timeLimit(.minutes(1))
    )
    func commitOfAnOpenWriterIsRead() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(path: path, logger: logger)
        let writer = try await AuditStore.open(path: path, logger: logger)  // as serve: open all along
        var tail = try await AuditTail(store, query: AuditQuery(), includingExisting: true)
        #expect(try await drain(&tail, store).isEmpty)
        let changes = try AuditLogChanges(databasePath: path, fallback: .seconds(3600))
        var signals = changes.signals.makeAsyncIterator()
        let id = try await writer.record(intent("pcmk1", at: 1), completion())
        var read: [Int64] = []
        while read.isEmpty, await signals.next() != nil {
            read = try await drain(&tail, store)
        }
        #expect(read == [id])
    }

    @Test("a log whose newest operation is older than one read already (replaced, restored) ends the tail")
    func rewoundLog() async throws {
        let directory = try TemporaryDirectory()
        let first = try await AuditStore.open(path: directory.file("first.db"), logger: logger)
        try await first.insertFinished((0..<5).map { (intent("pcmk1", at: Double($0)), completion()) })
        var tail = try await AuditTail(first, query: AuditQuery(), includingExisting: true)
        #expect(try await drain(&tail, first) == Array(1...5))
        let replacement = try await AuditStore.open(path: directory.file("second.db"), logger: logger)
        try await replacement.insertFinished([(intent("pcmk1", at: 9), completion())])
        await #expect(throws: AuditTailError.self) { _ = try await tail.next(replacement) }
    }

    @Test("inotify events are parsed as the kernel lays them out")
    func parseEvents() {
        func event(watch: Int32, mask: UInt32, name: String, padded length: Int) -> [UInt8] {
            func bytes(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
            var name = Array(name.utf8)
            name += [UInt8](repeating: 0, count: length - name.count)
            return bytes(UInt32(bitPattern: watch)) + bytes(mask) + bytes(0) + bytes(UInt32(length)) + name
        }
        let bytes =
            event(watch: 1, mask: UInt32(IN_MODIFY), name: "audit.db-wal", padded: 16)
            + event(watch: -1, mask: UInt32(IN_Q_OVERFLOW), name: "", padded: 0)
            + event(watch: 1, mask: UInt32(IN_CREATE), name: "x", padded: 16).dropLast(3)
        #expect(
            Inotify.parse(bytes[...]) == [
                Inotify.Event(watch: 1, mask: UInt32(IN_MODIFY), name: "audit.db-wal"),
                Inotify.Event(watch: -1, mask: UInt32(IN_Q_OVERFLOW), name: ""),
            ]
        )
    }
}
