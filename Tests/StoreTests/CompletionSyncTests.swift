import Foundation
import Logging
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")

private func intent(_ action: String = "off") -> AuditIntent {
    AuditIntent(
        source: "rest",
        requester: "token:ops",
        clientAddress: "127.0.0.1",
        target: "pcmk1",
        domainName: "pcmk1",
        domainUUID: "6695eb01-f6a4-8304-79aa-97f2502e193f",
        action: action,
        requestedAt: Date()
    )
}

private let success = AuditCompletion(
    result: .success,
    powerState: "off",
    errorCode: nil,
    message: nil,
    finishedAt: Date()
)

/// A store opened as `serve` opens it (completions synced later), with a commit delay no test waits for unless
/// given.
private func daemonStore(
    at path: String,
    busyTimeout: Duration = AuditStore.defaultBusyTimeout,
    delay: Duration = .seconds(3600)
) async throws -> AuditStore {
    try await AuditStore.open(
        path: path,
        busyTimeout: busyTimeout,
        deferredCommitDelay: delay,
        syncsCompletionsLater: true,
        logger: logger
    )
}

/// The connection's `synchronous` setting (2 is FULL).
private func synchronousSetting(_ store: AuditStore) async throws -> Int64? {
    try await store.readSynchronousSetting()
}

extension AuditStore {
    fileprivate func readSynchronousSetting() throws -> Int64? {
        try database.query("PRAGMA synchronous").first?.first?.integer
    }

    /// `complete` in a commit that waits for the disk, as a batch holding an intent row would.
    fileprivate func completeSynced(_ id: Int64, _ completion: AuditCompletion) throws -> Bool {
        try commit(synced: true) { () throws(SQLiteError) in try perform(.complete(id, completion)) } == 1
    }
}

/// In a store that syncs completions later (`serve`'s), a completion row is committed before `complete` returns
/// and synced with the next synced commit; an intent row is synced before `begin` returns.
@Suite("Audit store: completions are committed at once and synced with the next commit")
struct CompletionSyncTests {
    @Test("a completion: committed when complete returns (another connection reads it), synced within the delay")
    func committedAtOnceSyncedWithinTheDelay() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let delay = Duration.seconds(3)
        let store = try await daemonStore(at: path, delay: delay)
        let observer = try await AuditStore.open(path: path, logger: logger)

        let id = try await store.begin(intent())
        #expect(await !store.hasUnsyncedCommit)
        let completing = ContinuousClock.now
        #expect(try await store.complete(id, success))
        let unsynced = await store.hasUnsyncedCommit
        // (On a machine so loaded that the delay passed meanwhile, the timer may have synced it already.)
        if ContinuousClock.now - completing < delay { #expect(unsynced) }
        // In the WAL file, not only in this connection's memory: what a process that dies now leaves behind.
        let row = try #require(try await observer.operation(id: id))
        #expect(row.state == .finished && row.result == .success && row.powerState == "off")
        // Only that commit skipped the sync: the connection is back to FULL for every other write.
        #expect(try await synchronousSetting(store) == 2)

        try await waitUntil("the completion is synced", limit: .seconds(20)) { await !store.hasUnsyncedCommit }
        #expect(try await synchronousSetting(store) == 2)
    }

    @Test("the next intent row's commit syncs a completion; so does a graceful stop (commitDeferredRows)")
    func syncedByTheNextCommitOrAtTheEnd() async throws {
        let directory = try TemporaryDirectory()
        // The default delay of `daemonStore` is never reached here: only another commit can sync the completion.
        let store = try await daemonStore(at: directory.file("audit.db"))
        let first = try await store.begin(intent())
        try await store.complete(first, success)
        #expect(await store.hasUnsyncedCommit)
        let second = try await store.begin(intent("on"))
        #expect(await !store.hasUnsyncedCommit)

        try await store.complete(second, success)
        #expect(await store.hasUnsyncedCommit)
        await store.commitDeferredRows()
        #expect(await !store.hasUnsyncedCommit)
        #expect(try await store.operation(id: second)?.state == .finished)
    }

    @Test("a store that does not sync completions later (a command's) waits for each completion's fsync")
    func commandStoreSyncsAtOnce() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(
            path: directory.file("audit.db"),
            deferredCommitDelay: .seconds(3600),
            logger: logger
        )
        let id = try await store.begin(intent())
        try await store.complete(id, success)
        #expect(await !store.hasUnsyncedCommit)
        #expect(try await store.operation(id: id)?.state == .finished)
    }

    @Test("a completion queued with an intent row shares its synced commit")
    func completionWithAnIntentIsSynced() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await daemonStore(at: path, busyTimeout: .seconds(120))
        let first = try await store.begin(intent())
        // Another connection holds the write lock: the store's next commit waits on its queue, and the two writes
        // queued meanwhile go together into the commit after it.
        let blocker = try Database(path: path)
        try blocker.execute("BEGIN IMMEDIATE")
        let held = Task { try await store.record(intent("status"), success) }
        try await Task.sleep(for: .milliseconds(500))
        let completing = Task.immediate { try await store.complete(first, success) }
        let beginning = Task.immediate { try await store.begin(intent("on")) }
        try blocker.execute("COMMIT")
        _ = try await held.value
        #expect(try await completing.value)
        let second = try await beginning.value
        // Nothing written since: only the shared commit can have synced the completion.
        #expect(await !store.hasUnsyncedCommit)
        #expect(try await store.operation(id: first)?.state == .finished)
        #expect(try await store.operation(id: second)?.state == .started)
    }

    @Test("a commit that changes nothing does not count as a sync")
    func emptyCommitIsNoSync() async throws {
        let directory = try TemporaryDirectory()
        let store = try await daemonStore(at: directory.file("audit.db"))
        let id = try await store.begin(intent())
        try await store.complete(id, success)
        #expect(await store.hasUnsyncedCommit)
        // A synced commit whose one write changes no row (the operation is finished already) writes no frame.
        #expect(try await !store.completeSynced(id, success))
        #expect(await store.hasUnsyncedCommit)
    }

    @Test("intent rows and finished rows still wait for the disk; a completion in the same batch is synced with them")
    func otherWritesStaySynced() async throws {
        let directory = try TemporaryDirectory()
        let store = try await daemonStore(at: directory.file("audit.db"))
        let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
            for _ in 0..<8 { group.addTask { try await store.begin(intent()) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(await !store.hasUnsyncedCommit)
        // Completions and new intents at once: every batch holding an intent is synced.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in ids { group.addTask { try await store.complete(id, success) } }
            group.addTask { _ = try await store.begin(intent()) }
            group.addTask { _ = try await store.record(intent("status"), success) }
            try await group.waitForAll()
        }
        _ = try await store.record(intent("status"), success)
        #expect(await !store.hasUnsyncedCommit)
        #expect(try await synchronousSetting(store) == 2)
        #expect(try await store.query(AuditQuery(limit: 20)).records.filter { $0.state == .finished }.count == 10)
    }
}
