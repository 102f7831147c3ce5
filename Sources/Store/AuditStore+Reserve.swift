import Glibc
import Locking
import Logging

/// Space kept inside the audit log for fences, for a filesystem that fills up (`AuditStore.open(reserve:)`).
///
/// A fence needs its intent row on disk before it acts; on a full filesystem it would be refused. So the log
/// keeps `bytes` in a table of its own (`reserve`). When the filesystem's free space falls below `lowWater`,
/// the next commit deletes that row: its pages go to SQLite's free list, where only this database can use
/// them (whoever else fills the disk cannot), and new rows take them instead of growing the file. The
/// write-ahead log keeps its size meanwhile (it is never truncated, also across restarts), so that commits
/// reuse it instead of growing it. Rows of requests that changed nothing are then left unwritten by the
/// service (`reserveInUse`), so that the space goes to fences. Once `highWater` is free again, the reserve is
/// filled anew.
public struct AuditSpaceReserve: Sendable, Equatable {
    /// The space kept: 4 MiB, about 6,000 fences' rows. Writing it also grows the write-ahead log to that
    /// size, which is to hold what is written between two checkpoints (SQLite's automatic checkpoint comes
    /// after 1,000 pages, 4 MB): not less.
    public var bytes = 4 << 20
    /// Free space on the filesystem below which the reserve is put to use. Above the write-ahead log's size
    /// (pages it holds that are not in the file yet may still need room when they are written back).
    public var lowWater = 32 << 20
    /// Free space from which the reserve is kept again.
    public var highWater = 64 << 20
    /// How often, at most, a commit checks whether the reserve can be kept again.
    package var refillInterval: Duration = .seconds(10)

    public init() {}
}

/// Where the reserve stands.
enum ReserveState {
    /// This store keeps none (a command's store, a read-only one).
    case none
    /// Kept: its row holds the space.
    case kept
    /// In use: its pages are in the free list, or were never there (not enough space at open).
    case inUse
}

extension AuditStore {
    /// Free bytes on the audit log's filesystem for an unprivileged writer, or nil if unknown.
    public nonisolated func freeBytes() -> Int? {
        var status = statvfs()
        guard statvfs(path, &status) == 0 else { return nil }
        return Int(status.f_bavail) * Int(status.f_frsize)
    }

    /// At open, in a store that keeps a reserve: keeps the write-ahead log's file at close (so that its size
    /// is kept too), fills the reserve if it is missing and there is room, and grows a write-ahead log smaller
    /// than the reserve by rewriting it, so that the log has room for a reserve's worth of pages.
    static func prepareReserve(
        _ reserve: AuditSpaceReserve,
        database: Database,
        path: String,
        logger: Logger
    ) throws(SQLiteError) -> ReserveState {
        try database.keepWriteAheadLogAtClose()
        let kept = try database.query("SELECT length(filler) FROM reserve WHERE id = 1").first?.first?.integer
        var status = statvfs()
        let free = statvfs(path, &status) == 0 ? Int(status.f_bavail) * Int(status.f_frsize) : 0
        guard free >= reserve.highWater else {
            if kept == nil {
                logger.error(
                    "the audit log's filesystem is nearly full: no space could be kept for fences",
                    metadata: ["audit.path": "\(path)", "audit.free_bytes": "\(free)"]
                )
            }
            return kept == nil ? .inUse : .kept
        }
        var walStatus = stat()
        let walBytes = stat(path + "-wal", &walStatus) == 0 ? Int(walStatus.st_size) : 0
        if kept == nil || kept != Int64(reserve.bytes) || walBytes < reserve.bytes {
            _ = try database.transaction { () throws(SQLiteError) in
                try database.query(
                    "INSERT INTO reserve (id, filler) VALUES (1, zeroblob(?)) "
                        + "ON CONFLICT (id) DO UPDATE SET filler = excluded.filler",
                    [.integer(Int64(reserve.bytes))]
                )
            }
            // Into the database file now, while there is room: pages still only in the write-ahead log would
            // need the file to grow when they are written back, on a full disk.
            try database.execute("PRAGMA wal_checkpoint(PASSIVE)")
        }
        return .kept
    }

    /// Whether the reserve is in use now: the filesystem ran low, and the service leaves rows of requests
    /// that changed nothing unwritten so that the space goes to fences. Read without the actor.
    public nonisolated var reserveInUse: Bool { reserveInUseNow.withLock { $0 } }

    /// Before a commit: whether the reserve is to be put to use in it (kept, and the filesystem has less than
    /// `lowWater` free).
    func reserveDue() -> Bool {
        guard case .kept = reserveState, let reserve, let free = freeBytes() else { return false }
        return free < reserve.lowWater
    }

    /// Before a commit, in a transaction of its own: frees the reserve's pages for the rows that follow.
    /// Debian's SQLite overwrites deleted content with zeros (`secure_delete`): the reserve's whole size
    /// written to the write-ahead log, on a filesystem running out of room. Its content is zeros already, so it
    /// is freed with `secure_delete = FAST` (a few pages of the free list written, not the freed pages). A
    /// failure is logged once, and tried again before the next commit.
    func releaseReserve() {
        do throws(SQLiteError) {
            let previous = try database.query("PRAGMA secure_delete").first?.first?.integer ?? 0
            try database.execute("PRAGMA secure_delete = FAST")
            defer { try? database.execute("PRAGMA secure_delete = \(previous)") }
            try database.transaction { () throws(SQLiteError) in try statement("DELETE FROM reserve").run() }
        } catch {
            if !reserveReleaseFailed {
                reserveReleaseFailed = true
                logger.error(
                    "the audit log's filesystem is nearly full, and the space kept for fences could not be freed",
                    metadata: ["audit.path": "\(path)", "error": "\(error)"]
                )
            }
            return
        }
        reserveReleaseFailed = false
        reserveState = .inUse
        lastReserveRefill = .now
        reserveInUseNow.withLock { $0 = true }
        logger.error(
            "the audit log's filesystem is nearly full: fences now use the space kept for them; reads and refusals are not recorded until it is free again",
            metadata: [
                "audit.path": "\(path)", "audit.free_bytes": "\(freeBytes() ?? 0)",
                "audit.reserve_bytes": "\(reserve?.bytes ?? 0)",
            ]
        )
    }

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)`: the write-ahead log back to nothing; for tests that measure what
    /// a commit writes to it.
    package func truncateWriteAheadLog() throws {
        try wrap { try database.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    /// After a commit: keeps the reserve again once `highWater` is free (checked at most every
    /// `refillInterval`, the first time that long after it was freed).
    func refillReserveIfRoom() {
        guard case .inUse = reserveState, let reserve else { return }
        let now = ContinuousClock.now
        if let last = lastReserveRefill, now - last < reserve.refillInterval { return }
        lastReserveRefill = now
        guard let free = freeBytes(), free >= reserve.highWater else { return }
        do throws(SQLiteError) {
            try commit(synced: true) { () throws(SQLiteError) in
                try statement("INSERT OR REPLACE INTO reserve (id, filler) VALUES (1, zeroblob(?))")
                    .run([.integer(Int64(reserve.bytes))])
            }
            try? database.execute("PRAGMA wal_checkpoint(PASSIVE)")
            reserveState = .kept
            reserveInUseNow.withLock { $0 = false }
            logger.notice(
                "the audit log's filesystem has room again: space is kept for fences anew",
                metadata: ["audit.path": "\(path)", "audit.free_bytes": "\(freeBytes() ?? 0)"]
            )
        } catch {
            logger.warning("could not keep space for fences again", metadata: ["error": "\(error)"])
        }
    }
}
