import Glibc
import Locking
import Logging

/// Space kept inside the audit log for fences, for a filesystem that fills up (`AuditStore.open(reserve:)`).
///
/// A fence needs its intent row on disk before it acts; on a full filesystem it would be refused. So the log
/// keeps `bytes` in a table of its own (`reserve`). When the filesystem's free space falls below `lowWater`,
/// the next commit deletes that row: its pages go to SQLite's free list, where only this database can use
/// them (whoever else fills the disk cannot), and new rows take them instead of growing the file. The
/// write-ahead log keeps its size meanwhile (the daemon never truncates it, also across restarts), so that commits
/// reuse it instead of growing it, and is checkpointed every `autocheckpointInUse` pages instead of 1,000, so
/// that it has room to spare when a reader delays a checkpoint. Rows of requests that changed nothing are then
/// left unwritten by the service (`reserveInUse`), so that the space goes to fences. Once `highWater` is free
/// again, the reserve is filled anew, when no write waits.
///
/// What it cannot do: a reader that holds the log longer than its room lasts (a backup tool reading the
/// database for minutes) makes it grow; and on a copy-on-write filesystem (btrfs, ZFS) rewriting a page needs
/// a new block, so a full one still refuses fences.
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
    /// Pages after which the write-ahead log is checkpointed while the reserve is in use (SQLite's default,
    /// 1,000, would leave a log the reserve's size about 25 pages to spare).
    static let autocheckpointInUse = 256
    /// SQLite's own, restored when the reserve is kept again.
    static let autocheckpointKept = 1000

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
        Self.freeBytes(at: path)
    }

    static func freeBytes(at path: String) -> Int? {
        var status = statvfs()
        guard statvfs(path, &status) == 0 else { return nil }
        return Int(status.f_bavail) * Int(status.f_frsize)
    }

    /// At open, in a store that keeps a reserve, before anything else is written: writes the write-ahead log
    /// back into the database file and has the next commit start it from its beginning (a log recovered at
    /// open, after a stop or a crash, would be appended to until a checkpoint had written all of it back, and
    /// pages only in the log would need the file to grow when written back); then fills the reserve (growing
    /// a smaller log to the reserve's size) if there is room, or frees it if the filesystem is already low.
    static func prepareReserve(
        _ reserve: AuditSpaceReserve,
        database: Database,
        path: String,
        logger: Logger
    ) throws(SQLiteError) -> ReserveState {
        // Only this connection keeps the file: a command that closes the database last while no daemon runs
        // removes it (and with it what `.immutable` readers rely on: no log, every row in the file); the next
        // start grows it again if there is room, and says so if not.
        try database.keepWriteAheadLogAtClose()
        restartWriteAheadLog(database, logger: logger)
        let kept = try database.query("SELECT length(filler) FROM reserve WHERE id = 1").first?.first?.integer
        let free = freeBytes(at: path) ?? 0
        var walStatus = stat()
        let walBytes = stat(path + "-wal", &walStatus) == 0 ? Int(walStatus.st_size) : 0
        if free >= reserve.highWater {
            if kept != Int64(reserve.bytes) || walBytes < reserve.bytes {
                try writeReserve(reserve, database: database, logger: logger)
            }
            return .kept
        }
        if walBytes < reserve.bytes {
            logger.error(
                "the audit log's filesystem is nearly full, and its write-ahead log is smaller than the space kept for fences: once the disk is full, commits may need it to grow",
                metadata: ["audit.path": "\(path)", "audit.free_bytes": "\(free)", "audit.wal_bytes": "\(walBytes)"]
            )
        }
        guard kept != nil else {
            logger.error(
                "the audit log's filesystem is nearly full: no space could be kept for fences",
                metadata: ["audit.path": "\(path)", "audit.free_bytes": "\(free)"]
            )
            try database.execute("PRAGMA wal_autocheckpoint = \(AuditSpaceReserve.autocheckpointInUse)")
            return .inUse
        }
        guard free < reserve.lowWater else { return .kept }
        do throws(SQLiteError) {
            try freeReserve(database, logger: logger)
        } catch {
            // Kept, then: the first commit tries again, and logs a failure.
            return .kept
        }
        logInUse(path: path, free: free, reserve: reserve, logger: logger)
        return .inUse
    }

    /// `PRAGMA wal_checkpoint(RESTART)`: every frame of the log written back into the database file, and the
    /// next commit writing the log from its beginning. Logged if it cannot be done (a reader of another process
    /// holds the log, or the file cannot grow).
    static func restartWriteAheadLog(_ database: Database, logger: Logger) {
        do throws(SQLiteError) {
            let counts = try database.query("PRAGMA wal_checkpoint(RESTART)").first?.compactMap(\.integer) ?? []
            guard counts.count == 3, counts[0] == 0, counts[1] == counts[2] else {
                logger.warning(
                    "the audit log's write-ahead log could not all be written back into the database file now",
                    metadata: ["audit.checkpoint": "\(counts)"]
                )
                return
            }
        } catch {
            logger.warning(
                "the audit log's write-ahead log could not be written back into the database file now",
                metadata: ["error": "\(error)"]
            )
        }
    }

    /// Writes the reserve's row (in a transaction, synced), then writes the log back into the database file
    /// (`restartWriteAheadLog`: pages only in the log would need the file to grow when written back, on a full
    /// disk). Its pages pass through a page cache of 16 pages instead of filling the connection's (2 MB),
    /// and the cache is emptied after (`PRAGMA shrink_memory`): otherwise every later statement evicted
    /// pages to load its own, each eviction a free whose memory the allocator handed back and faulted in
    /// again (an audited off/on over HTTP cost 0.33 ms of CPU instead of 0.23 at 16 connections, measured),
    /// and the allocator kept that memory in the process's RSS.
    static func writeReserve(_ reserve: AuditSpaceReserve, database: Database, logger: Logger) throws(SQLiteError) {
        let previous = try database.query("PRAGMA cache_size").first?.first?.integer ?? -2000
        try database.execute("PRAGMA cache_size = 16")
        defer { try? database.execute("PRAGMA cache_size = \(previous)") }
        _ = try database.transaction { () throws(SQLiteError) in
            try database.query(
                "INSERT OR REPLACE INTO reserve (id, filler) VALUES (1, zeroblob(?))",
                [.integer(Int64(reserve.bytes))]
            )
        }
        restartWriteAheadLog(database, logger: logger)
        try? database.execute("PRAGMA shrink_memory")
    }

    /// Frees the reserve's pages for the rows that follow, in a transaction of its own, and checkpoints the
    /// log more often from now on. Debian's SQLite overwrites deleted content with zeros (`secure_delete`):
    /// the reserve's whole size written to the write-ahead log, on a filesystem running out of room. Its
    /// content is zeros already, so it is freed with `secure_delete = FAST` (a few pages of the free list
    /// written, not the freed pages).
    static func freeReserve(_ database: Database, logger: Logger) throws(SQLiteError) {
        let previous = try database.query("PRAGMA secure_delete").first?.first?.integer ?? 0
        try database.execute("PRAGMA secure_delete = FAST")
        defer {
            do throws(SQLiteError) {
                try database.execute("PRAGMA secure_delete = \(previous)")
            } catch {
                logger.error("could not set secure_delete back", metadata: ["error": "\(error)"])
            }
        }
        _ = try database.transaction { () throws(SQLiteError) in try database.query("DELETE FROM reserve") }
        try database.execute("PRAGMA wal_autocheckpoint = \(AuditSpaceReserve.autocheckpointInUse)")
    }

    static func logInUse(path: String, free: Int, reserve: AuditSpaceReserve, logger: Logger) {
        logger.error(
            "the audit log's filesystem is nearly full: fences now use the space kept for them; reads and unauthenticated refusals are not recorded until it is free again",
            metadata: [
                "audit.path": "\(path)", "audit.free_bytes": "\(free)", "audit.reserve_bytes": "\(reserve.bytes)",
            ]
        )
    }

    /// Whether the reserve is in use now: the filesystem ran low, and the service leaves rows of requests
    /// that changed nothing unwritten so that the space goes to fences. Read without the actor.
    public nonisolated var reserveInUse: Bool { reserveInUseNow.withLock { $0 } }

    /// Before a commit: whether the reserve is to be put to use (kept, and the filesystem has less than
    /// `lowWater` free).
    func reserveDue() -> Bool {
        guard case .kept = reserveState, let reserve, let free = freeBytes() else { return false }
        return free < reserve.lowWater
    }

    /// Before a commit, in a transaction of its own: frees the reserve (`freeReserve`). A failure is logged once,
    /// and tried again before the next commit; the commit goes ahead either way.
    func releaseReserve() {
        guard let reserve else { return }
        do throws(SQLiteError) {
            try Self.freeReserve(database, logger: logger)
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
        Self.logInUse(path: path, free: freeBytes() ?? 0, reserve: reserve, logger: logger)
    }

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)`: the write-ahead log back to nothing; for tests that measure what
    /// a commit writes to it.
    package func truncateWriteAheadLog() throws {
        try wrap { try database.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    /// Once no write waits (after the queue's current work): keeps the reserve again if `highWater` is free
    /// (checked at most every `refillInterval`, the first time that long after it was freed). Its synced write
    /// of the reserve's size and the checkpoint after it then hold no fence that was already waiting.
    func refillReserveIfRoom() {
        guard case .inUse = reserveState, let reserve, !hasPendingWrites else { return }
        let now = ContinuousClock.now
        if let last = lastReserveRefill, now - last < reserve.refillInterval { return }
        lastReserveRefill = now
        guard let free = freeBytes(), free >= reserve.highWater else { return }
        do throws(SQLiteError) {
            if !sync.synchronousIsFull { try restoreSynchronousFull() }
            try Self.writeReserve(reserve, database: database, logger: logger)
            try database.execute("PRAGMA wal_autocheckpoint = \(AuditSpaceReserve.autocheckpointKept)")
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
