import Dispatch
import FoundationEssentials
import Locking
import Logging
import Synchronization

/// What the store knows about commits that have not reached the disk yet.
struct CommitSync {
    /// A commit since the last synced one was made without waiting for the disk.
    var unsyncedCommit = false
    /// A timer will sync it (`AuditStore.syncCommits`).
    var timerScheduled = false
    /// The connection's `synchronous` setting is FULL. False only inside a commit made without waiting for the
    /// disk, or if setting it back failed: then every write sets it again first, or fails.
    var synchronousIsFull = true
    /// The last timed sync failed (logged once until one succeeds).
    var failing = false
}

/// Commits that need not wait for the disk: a completion row.
///
/// In WAL mode with `synchronous=FULL`, a commit syncs the WAL file before it returns, and so every frame
/// written before it; with `synchronous=NORMAL` it writes its frames without a sync. A completion is committed
/// the second way: kept if the process dies (its frames are in the kernel's page cache, and SQLite replays the
/// WAL at the next open), on disk with the next synced commit, which is the next intent row's, a deferred read
/// row's, or the store's own `deferredCommitDelay` after the commit.
extension AuditStore {
    /// Runs `body` in a transaction; `synced`: its commit waits until the WAL is on disk. Returns the body's
    /// value. A commit that was to skip the sync but could not set the connection so is synced.
    func commit<T>(synced: Bool, _ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        if synced || !commitsWithoutSync() {
            if !sync.synchronousIsFull { try restoreSynchronousFull() }
            let changesBefore = database.totalChanges
            let value = try transaction(body)
            // A commit that changed nothing wrote no frame to the WAL, and so synced nothing.
            if database.totalChanges != changesBefore {
                sync.unsyncedCommit = false
                sync.failing = false
                lastDurableCommit.withLock { $0 = .now }
            }
            return value
        }
        defer {
            do throws(SQLiteError) {
                try restoreSynchronousFull()
            } catch {
                logger.error(
                    "could not set the audit log back to synchronous=FULL; every write will try again first",
                    metadata: ["error": "\(error)"]
                )
            }
        }
        let value = try transaction(body)
        sync.unsyncedCommit = true
        scheduleSync()
        return value
    }

    /// One transaction around `body`; first, in one of its own, frees the space kept for fences if the
    /// filesystem runs low (`AuditSpaceReserve`), so that a failure there never fails `body`'s rows.
    private func transaction<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        if reserveDue() { releaseReserve() }
        return try database.transaction(body)
    }

    /// Syncs the commits made without waiting for the disk `deferredCommitDelay` from now, unless a timer
    /// will already.
    private func scheduleSync() {
        guard !sync.timerScheduled else { return }
        sync.timerScheduled = true
        // Holds the store until then (a daemon's store lives until it stops; a weak reference's side table
        // outlived a store released meanwhile, which LeakSanitizer reported).
        executor.queue.asyncAfter(deadline: .now() + deferredCommitInterval) {
            self.assumeIsolated { store in
                store.sync.timerScheduled = false
                if store.sync.unsyncedCommit { store.syncCommits() }
            }
        }
    }

    /// Makes every commit durable: one synced commit that writes the deferred read rows waiting, if any, and
    /// rewrites the `write_probe` row (a sync needs a frame to write). A failure is logged (once until a sync
    /// succeeds) and tried again after `deferredCommitDelay`, or by the next synced commit.
    func syncCommits() {
        let riders = takeDeferred(endingTimer: false)
        do throws(SQLiteError) {
            let failures = try commit(synced: true) { () throws(SQLiteError) in
                let failures = insert(riders)
                _ = try perform(.probe)
                return failures
            }
            logDeferredFailures(failures, of: riders.count)
        } catch {
            lastDurableCommit.withLock { $0 = nil }
            logDeferredFailures(riders.count, of: riders.count, error: error)
            scheduleSync()
            guard !sync.failing else { return }
            sync.failing = true
            logger.error(
                "completion rows are committed but could not be synced to disk; trying again",
                metadata: ["error": "\(error)"]
            )
        }
    }

    /// Sets the connection to commit without waiting for the disk (`synchronous=NORMAL`); true if it does.
    private func commitsWithoutSync() -> Bool {
        sync.synchronousIsFull = false
        do throws(SQLiteError) {
            try database.execute("PRAGMA synchronous = NORMAL")
            return true
        } catch {
            return false
        }
    }

    /// Sets the connection back to `synchronous=FULL`.
    func restoreSynchronousFull() throws(SQLiteError) {
        try database.execute("PRAGMA synchronous = FULL")
        sync.synchronousIsFull = true
    }

    /// Whether a commit was made without waiting for the disk and has not been synced since; for tests.
    package var hasUnsyncedCommit: Bool { sync.unsyncedCommit }
}
