internal import CSQLite
import Dispatch
public import FoundationEssentials
import Glibc
import Locking
public import Logging

/// The audit log: one SQLite file in WAL mode with `synchronous=FULL`, so a row is on disk when a call returns;
/// except, in a store opened with `syncsCompletionsLater` (the daemon's), a completion row, which is committed
/// when `complete` returns and on disk with the next synced commit, at the latest `deferredCommitDelay` later
/// (`AuditStore+Sync.swift`).
///
/// An actor whose executor is its own serial queue: every libsqlite3 call (and every fsync) runs there,
/// never on Swift's cooperative pool. Several processes may share one file (the daemon and CLI commands);
/// SQLite's locking and the busy timeout arbitrate.
public actor AuditStore {
    nonisolated let executor: SerialQueueExecutor
    let database: Database
    private let insertStatement: Statement
    private let completeStatement: Statement
    let logger: Logger
    private let owner = ProcessIdentity.current
    private var queryStatements: [String: Statement] = [:]
    private var pending: [PendingWrite] = []
    private var flushScheduled = false
    /// When a commit last reached the disk; nil after a failed one.
    /// Read without the actor: a health check or metrics scrape answered from it needs no hop to the queue.
    nonisolated let lastDurableCommit = Locked<ContinuousClock.Instant?>(nil)
    /// Commits made without waiting for the disk, and the timer that syncs them.
    var sync = CommitSync()
    /// Prepared on first use: a database opened read-only may predate the `write_probe` table.
    private var probeStatement: Statement?
    /// Rows of requests that changed nothing, waiting for the next commit (`recordEventually`).
    private nonisolated let deferred = Locked(DeferredRows())
    /// The space kept for fences, if this store keeps one (`AuditSpaceReserve`), and where it stands.
    let reserve: AuditSpaceReserve?
    var reserveState: ReserveState
    nonisolated let reserveInUseNow = Locked(false)
    /// When the reserve was last refilled or tried.
    var lastReserveRefill: ContinuousClock.Instant?
    /// Freeing the reserve failed, and was logged.
    var reserveReleaseFailed = false

    /// How long a row given to `recordEventually` may wait for a commit: at most the rows of this interval
    /// are lost if the process dies (never a row of a request that changes a domain's state).
    public nonisolated let deferredCommitDelay: Duration
    /// Whether a completion row's commit skips the fsync, which the next commit makes (`complete`).
    public nonisolated let syncsCompletionsLater: Bool
    /// Rows waiting for a commit beyond which one is started at once.
    static let deferredRowsPerCommit = 1024
    /// Rows waiting for a commit beyond which `recordEventually` waits for it.
    static let deferredRowsBacklog = 16 * deferredRowsPerCommit

    /// The database file.
    public nonisolated let path: String
    /// Whether another connection may read while this one writes without holding it up: the log is in WAL
    /// mode (or this store only reads). Else a reader's lock would make commits wait (`AuditReader`).
    public nonisolated let readsBesideWrites: Bool
    /// False when the file was opened read-only as unchanging (no `-wal` file to read others' commits from):
    /// this connection then never sees a row written after it opened.
    public nonisolated let seesLaterCommits: Bool

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    /// How long a writer waits for another process's lock before failing, by default.
    public static let defaultBusyTimeout: Duration = .seconds(5)
    /// How long a row of a request that changed nothing waits for a commit, by default.
    public static let defaultDeferredCommitDelay: Duration = .milliseconds(200)

    private init(
        executor: SerialQueueExecutor,
        database: Database,
        deferredCommitDelay: Duration,
        syncsCompletionsLater: Bool,
        readsBesideWrites: Bool,
        reserve: (AuditSpaceReserve, ReserveState)? = nil,
        logger: Logger
    ) throws(SQLiteError) {
        self.executor = executor
        self.reserve = reserve?.0
        self.reserveState = reserve?.1 ?? .none
        self.reserveInUseNow.withLock { $0 = reserve?.1 == .inUse }
        self.readsBesideWrites = readsBesideWrites
        self.deferredCommitDelay = deferredCommitDelay
        self.syncsCompletionsLater = syncsCompletionsLater
        self.database = database
        self.path = database.path
        self.seesLaterCommits = database.access != .immutable
        self.logger = logger
        self.insertStatement = try database.prepare(AuditColumn.insertSQL)
        self.completeStatement = try database.prepare(
            """
            UPDATE operations SET state = 'finished', result = ?1, power_state = ?2, error_code = ?3,
                message = CASE WHEN message IS NULL THEN ?4 WHEN ?4 IS NULL THEN message ELSE ?4 || '; ' || message END,
                finished_at = ?5, duration_us = ?5 - requested_at
            WHERE id = ?6 AND state = 'started'
            """
        )
    }

    /// Opens (creating with mode 0600 if needed) and migrates the database at `path`; or, with `readOnly`,
    /// opens an existing one for queries only, for a database that cannot be written (its filesystem turned
    /// read-only): nothing may write the file meanwhile.
    ///
    /// Does not recover interrupted rows; call `recoverInterrupted()` for that.
    /// - Throws: `AuditStoreError`; `.cannotOpen` if a read-write open finds the file or filesystem read-only.
    /// - Parameter busyTimeout: how long a write waits for another process's lock before failing.
    /// - Parameter deferredCommitDelay: how long a row given to `recordEventually` may wait for a commit.
    /// - Parameter syncsCompletionsLater: commit completion rows without waiting for the disk, syncing them with
    ///   the next commit (`complete`): for a daemon, whose store lives until it stops; a command that ends
    ///   right after its operation leaves it false, and waits for its completion's fsync.
    /// - Parameter reserve: space to keep for fences (`AuditSpaceReserve`): for a daemon. Kept only in WAL mode.
    public static func open(
        path: String,
        busyTimeout: Duration = defaultBusyTimeout,
        deferredCommitDelay: Duration = defaultDeferredCommitDelay,
        syncsCompletionsLater: Bool = false,
        readOnly: Bool = false,
        reserve: AuditSpaceReserve? = nil,
        logger: Logger
    ) async throws -> AuditStore {
        let executor = SerialQueueExecutor(label: "fencegate.audit-store")
        let milliseconds = Int32(
            clamping: busyTimeout.components.seconds * 1000
                + busyTimeout.components.attoseconds / 1_000_000_000_000_000
        )
        return try await withCheckedThrowingContinuation { continuation in
            executor.queue.async {
                continuation.resume(
                    with: Result {
                        try openOnQueue(
                            path: path,
                            busyTimeoutMilliseconds: milliseconds,
                            readOnly: readOnly,
                            deferredCommitDelay: deferredCommitDelay,
                            syncsCompletionsLater: syncsCompletionsLater,
                            reserve: reserve,
                            executor: executor,
                            logger: logger
                        )
                    }
                )
            }
        }
    }

    private static func openOnQueue(
        path: String,
        busyTimeoutMilliseconds: Int32,
        readOnly: Bool,
        deferredCommitDelay: Duration,
        syncsCompletionsLater: Bool,
        reserve: AuditSpaceReserve?,
        executor: SerialQueueExecutor,
        logger: Logger
    ) throws -> AuditStore {
        if readOnly {
            do throws(SQLiteError) {
                // Without a -wal file every row is in the main file, and SQLite can read it with no -shm
                // (which a read-only directory cannot hold) if told that nothing changes it.
                let walExists = FileManager.default.fileExists(atPath: path + "-wal")
                let database = try Database(path: path, access: walExists ? .readOnly : .immutable)
                try database.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
                return try AuditStore(
                    executor: executor,
                    database: database,
                    deferredCommitDelay: deferredCommitDelay,
                    syncsCompletionsLater: syncsCompletionsLater,
                    readsBesideWrites: true,
                    logger: logger
                )
            } catch {
                throw AuditStoreError.database(error)
            }
        }
        if let problem = UntrustedLocation.check(path, followingLink: false, exclusiveDirectory: true) {
            throw AuditStoreError.untrusted(problem)
        }
        try createIfMissing(path: path)
        // Checked again now that the file exists (it may have been created by someone else meanwhile).
        if let problem = UntrustedLocation.check(path, followingLink: false, exclusiveDirectory: true) {
            throw AuditStoreError.untrusted(problem)
        }
        try checkAccess(path: path, logger: logger)
        do {
            let database = try Database(path: path)
            if database.isReadOnly {
                throw AuditStoreError.cannotOpen(
                    path: path,
                    reason: "it can only be read (the file or its filesystem is read-only)"
                )
            }
            try database.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
            let mode = try database.query("PRAGMA journal_mode = WAL").first?.first?.text
            if mode?.lowercased() != "wal" {
                logger.warning("audit database is not in WAL mode", metadata: ["audit.path": "\(path)"])
            }
            try database.execute("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            try migrate(database)
            let isWAL = mode?.lowercased() == "wal"
            let reserveState = try reserve.flatMap { (reserve) throws(SQLiteError) in
                isWAL ? (reserve, try prepareReserve(reserve, database: database, path: path, logger: logger)) : nil
            }
            return try AuditStore(
                executor: executor,
                database: database,
                deferredCommitDelay: deferredCommitDelay,
                syncsCompletionsLater: syncsCompletionsLater,
                readsBesideWrites: isWAL,
                reserve: reserveState,
                logger: logger
            )
        } catch let error as SQLiteError {
            throw AuditStoreError.database(error)
        }
    }

    /// Refuses a database that group or others may write; warns about one they may read (it holds who fenced
    /// what, and token hashes).
    private static func checkAccess(path: String, logger: Logger) throws {
        guard let access = FileAccess(path: path) else { return }
        if access.othersCanWrite { throw AuditStoreError.writableByOthers(path: path, mode: access.octal) }
        if access.othersCanRead {
            logger.warning(
                "the audit database is readable by group or others; fix with: chmod 600 \(path)",
                metadata: ["audit.path": "\(path)", "file.mode": "\(access.octal)"]
            )
        }
    }

    /// Creates an empty database file with mode 0600, so the audit log is never world-readable. Never
    /// through a symbolic link (`O_EXCL` refuses one, dangling or not).
    private static func createIfMissing(path: String) throws {
        let descriptor = Glibc.open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if descriptor >= 0 {
            close(descriptor)
            return
        }
        let error = errno
        guard error != EEXIST else { return }
        throw AuditStoreError.cannotOpen(path: path, reason: String(cString: strerror(error)))
    }

    private static func migrate(_ database: Database) throws {
        try database.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at INTEGER NOT NULL
            )
            """
        )
        let known = Migration.all.last?.version ?? 0
        let found = Int(
            try database.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0].integer ?? 0
        )
        guard found <= known else {
            throw AuditStoreError.newerSchema(path: database.path, found: found, known: known)
        }
        for migration in Migration.all where migration.version > found {
            try database.transaction { () throws(SQLiteError) in
                // Another process may have applied it while we waited for the write lock.
                let applied = try database.query(
                    "SELECT 1 FROM schema_migrations WHERE version = ?",
                    [.integer(Int64(migration.version))]
                )
                guard applied.isEmpty else { return }
                try database.execute(migration.sql)
                try database.query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [.integer(Int64(migration.version)), .text(migration.name), .integer(Date().microsecondsSince1970)]
                )
            }
        }
    }

    // MARK: - Writing

    /// Writes the intent row (state `started`) and returns its id. Durable when this returns.
    /// - Throws: `AuditStoreError.database` if the row could not be written; the caller must not proceed.
    public func begin(_ intent: AuditIntent) async throws -> Int64 {
        try await write(.insert(intent, nil, owner))
    }

    /// Writes an intent row as if `owner` had written it; for tests of crash recovery.
    package func begin(_ intent: AuditIntent, owner: ProcessIdentity) async throws -> Int64 {
        try await write(.insert(intent, nil, owner))
    }

    /// Records the end of the operation `id`. Durable when this returns; in a store that `syncsCompletionsLater`,
    /// committed when this returns (every reader sees it, and it is kept if the process dies) and on disk with
    /// the next synced commit (the next intent row's, or the store's own at the latest `deferredCommitDelay`
    /// later), so a power loss or kernel crash in that interval can lose it: the row is then marked
    /// interrupted at the next start. Its intent row, written before the operation acted, is on disk already.
    ///
    /// A row that is no longer `started` (already completed, or marked interrupted) is left as it is.
    /// - Returns: false if no started row with that id existed.
    @discardableResult
    public func complete(_ id: Int64, _ completion: AuditCompletion) async throws -> Bool {
        try await write(.complete(id, completion)) == 1
    }

    /// Appends `note` to the row's message (e.g. what an operation did after it timed out).
    public func appendNote(_ id: Int64, _ note: String) throws {
        try wrap {
            try statement("UPDATE operations SET message = COALESCE(message || '; ', '') || ? WHERE id = ?")
                .run([.text(note), .integer(id)])
        }
    }

    /// Writes a row that is finished at once: an operation refused or failed before it could start.
    public func record(_ intent: AuditIntent, _ completion: AuditCompletion) async throws -> Int64 {
        try await write(.insert(intent, completion, owner))
    }

    /// Records a request that changed nothing (a status, a list, a health probe of the hypervisor) without
    /// waiting for the disk: the row is written with the next commit, at the latest `deferredCommitDelay`
    /// from now. If the process dies first, the row is lost; a request that changes a domain's state never
    /// goes this way (its intent row is durable before it acts). Readers of this store see the row at once
    /// (`query` and friends commit waiting rows first); other processes see it after the commit. Returns at
    /// once, unless `deferredRowsBacklog` rows wait already (a disk that stalls): then once they are
    /// committed, so that a stalled disk holds readers back, as it holds fences, instead of their rows
    /// piling up in memory.
    public nonisolated func recordEventually(_ intent: AuditIntent, _ completion: AuditCompletion) async {
        if recordWithNextCommit(intent, completion) { await commitDeferredRows() }
    }

    /// `deferredCommitDelay` for the store's queue's timers.
    nonisolated var deferredCommitInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = deferredCommitDelay.components
        return .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
    }

    /// True while fewer than `deferredRowsBacklog` rows wait for a commit: `recordWithNextCommit` then
    /// returns at once.
    public nonisolated var hasRoomForDeferredRows: Bool {
        deferred.withLock { $0.waiting.count < Self.deferredRowsBacklog }
    }

    /// `recordEventually` for a caller that cannot suspend (a thread of its own): queues the row for the next
    /// commit and returns at once; true if `deferredRowsBacklog` rows wait now, when a caller that can should
    /// wait for `commitDeferredRows()`. One that cannot checks `hasRoomForDeferredRows` first: the rows then
    /// go beyond the backlog by at most the number of such callers at once.
    @discardableResult
    public nonisolated func recordWithNextCommit(_ intent: AuditIntent, _ completion: AuditCompletion) -> Bool {
        let (startTimer, commitNow, full) = deferred.withLock { rows in
            rows.waiting.append((intent, completion))
            let start = !rows.timerRunning
            rows.timerRunning = true
            let count = rows.waiting.count
            return (start, count == Self.deferredRowsPerCommit, count >= Self.deferredRowsBacklog)
        }
        if startTimer {
            executor.queue.asyncAfter(deadline: .now() + deferredCommitInterval) {
                self.assumeIsolated { $0.commitDeferred(endingTimer: true) }
            }
        }
        if commitNow { executor.queue.async { self.assumeIsolated { $0.commitDeferred(endingTimer: false) } } }
        return full
    }

    /// Commits the rows given to `recordEventually` that wait, and makes every commit durable (at shutdown, so
    /// that none is lost).
    public func commitDeferredRows() {
        commitDeferred(endingTimer: false)
        if sync.unsyncedCommit { syncCommits() }
    }

    /// Commits the waiting deferred rows in a transaction of their own. `endingTimer`: called by the timer,
    /// whose end lets the next row start another.
    func commitDeferred(endingTimer: Bool) {
        let rows = takeDeferred(endingTimer: endingTimer)
        guard !rows.isEmpty else { return }
        do throws(SQLiteError) {
            let failures = try commit(synced: true) { () throws(SQLiteError) in insert(rows) }
            logDeferredFailures(failures, of: rows.count)
        } catch {
            lastDurableCommit.withLock { $0 = nil }
            logDeferredFailures(rows.count, of: rows.count, error: error)
        }
    }

    func takeDeferred(endingTimer: Bool) -> [(AuditIntent, AuditCompletion)] {
        deferred.withLock { rows in
            if endingTimer { rows.timerRunning = false }
            defer { rows.waiting = [] }
            return rows.waiting
        }
    }

    /// Inserts deferred rows (inside the caller's transaction); returns how many failed.
    func insert(_ rows: [(AuditIntent, AuditCompletion)]) -> Int {
        var failures = 0
        for (intent, completion) in rows {
            do throws(SQLiteError) {
                _ = try perform(.insert(intent, completion, owner))
            } catch {
                failures += 1
            }
        }
        return failures
    }

    func logDeferredFailures(_ failures: Int, of count: Int, error: SQLiteError? = nil) {
        guard failures > 0 else { return }
        var metadata: Logger.Metadata = ["audit.count": "\(failures)", "audit.rows": "\(count)"]
        if let error { metadata["error"] = "\(error)" }
        logger.error("rows of requests that changed nothing could not be recorded", metadata: metadata)
    }

    // MARK: - Group commit

    /// One row write waiting for the next commit.
    enum Write {
        case insert(AuditIntent, AuditCompletion?, ProcessIdentity)
        case complete(Int64, AuditCompletion)
        /// Rewrites the one `write_probe` row: proves that a commit reaches the disk.
        case probe

        /// False for a completion: its commit need not wait for the disk (`complete`).
        var waitsForDisk: Bool {
            if case .complete = self { return false }
            return true
        }
    }

    private struct PendingWrite {
        let write: Write
        let continuation: CheckedContinuation<Int64, any Error>
    }

    /// Queues `write` for the next commit and waits until it is durable. Writes that arrive while a commit is
    /// running share the next one: one transaction, one fsync, however many rows. Returns the new row's id
    /// (insert) or the number of rows changed (complete).
    private func write(_ write: Write) async throws -> Int64 {
        try await withCheckedThrowingContinuation { continuation in
            pending.append(PendingWrite(write: write, continuation: continuation))
            if !flushScheduled {
                flushScheduled = true
                // A block on this actor's queue: it runs after the writes already queued behind us (no task).
                executor.queue.async { self.assumeIsolated { $0.flush() } }
            }
        }
    }

    private func flush() {
        let batch = pending
        pending = []
        flushScheduled = false
        guard !batch.isEmpty else { return }
        // One transaction: a row that fails alone fails alone; a failed commit fails them all. It waits for the
        // disk unless every write in it is a completion and this store syncs those later.
        let synced = !syncsCompletionsLater || batch.contains { $0.write.waitsForDisk }
        // Rows of requests that changed nothing ride along a synced commit: no commit of their own. (Not one
        // that skips the sync: their own timer's commit would have synced them sooner.)
        let riders = synced ? takeDeferred(endingTimer: false) : []
        let results: [Result<Int64, any Error>]
        let riderFailures: Int
        do throws(SQLiteError) {
            (results, riderFailures) = try commit(synced: synced) { () throws(SQLiteError) in
                // The reads were answered before these writes were queued: their rows come first, so that ids
                // follow the order of the requests.
                let riderFailures = insert(riders)
                let results = batch.map { entry -> Result<Int64, any Error> in
                    do throws(SQLiteError) {
                        return .success(try perform(entry.write))
                    } catch {
                        return .failure(AuditStoreError.database(error))
                    }
                }
                return (results, riderFailures)
            }
        } catch {
            lastDurableCommit.withLock { $0 = nil }
            logDeferredFailures(riders.count, of: riders.count, error: error)
            let failure = AuditStoreError.database(error)
            for entry in batch { entry.continuation.resume(throwing: failure) }
            return
        }
        logDeferredFailures(riderFailures, of: riders.count)
        for (entry, result) in zip(batch, results) { entry.continuation.resume(with: result) }
        if case .inUse = reserveState {
            // Behind the writes queued meanwhile.
            executor.queue.async { self.assumeIsolated { $0.refillReserveIfRoom() } }
        }
    }

    /// Writes wait for the next commit.
    var hasPendingWrites: Bool { !pending.isEmpty }

    /// Runs one row write (inside the caller's transaction); the new row's id, or the rows changed.
    func perform(_ write: Write) throws(SQLiteError) -> Int64 {
        switch write {
        case .insert(let intent, let completion, let owner):
            try insertStatement.run(AuditRecord.insertValues(intent, completion, owner: owner))
            return database.lastInsertRowID
        case .complete(let id, let completion):
            let finished = completion.finishedAt.microsecondsSince1970
            // A note appended meanwhile (e.g. what a timed-out call did later) is kept after the message.
            try completeStatement.run([
                .text(completion.result.rawValue), .optionalText(completion.powerState),
                .optionalText(completion.errorCode), .optionalText(completion.message), .integer(finished),
                .integer(id),
            ])
            return Int64(database.changes)
        case .probe:
            let probe: Statement
            if let prepared = probeStatement {
                probe = prepared
            } else {
                probe = try database.prepare(
                    """
                    INSERT INTO write_probe (id, written_at) VALUES (1, ?)
                    ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at
                    """
                )
                probeStatement = probe
            }
            try probe.run([.integer(Date().microsecondsSince1970)])
            return Int64(database.changes)
        }
    }

    /// Marks as `interrupted` every `started` row whose process is gone (crashed or killed).
    ///
    /// Rows owned by a live process (a running daemon, a CLI command in progress) are left alone, so any
    /// process may call this at start-up.
    /// - Returns: the number of rows marked.
    @discardableResult
    public func recoverInterrupted(now: Date = Date()) throws -> Int {
        try wrap {
            let owners = try database.query(
                "SELECT DISTINCT owner_pid, owner_start FROM operations WHERE state = 'started'"
            )
            var marked = 0
            for row in owners {
                guard let pid = row[0].integer, let start = row[1].integer else { continue }
                let identity = ProcessIdentity(pid: Int32(truncatingIfNeeded: pid), startTicks: start)
                if identity == owner || identity.isAlive { continue }
                try database.query(
                    """
                    UPDATE operations SET state = 'interrupted', result = 'interrupted', error_code = 'interrupted',
                        message = 'the process performing this operation ended before recording its result; \
                    check the domain''s state', finished_at = ?
                    WHERE state = 'started' AND owner_pid = ? AND owner_start = ?
                    """,
                    [.integer(now.microsecondsSince1970), .integer(pid), .integer(start)]
                )
                marked += database.changes
            }
            if marked > 0 {
                logger.warning("marked interrupted operations", metadata: ["audit.count": "\(marked)"])
            }
            return marked
        }
    }

    /// How long a durable commit counts as proof that the audit log can be written.
    static let writeProofLifetime: Duration = .seconds(1)

    /// Proves that the audit log can be written now: a commit reached the disk within the last second, or a
    /// probe row is written and synced now (sharing the next group commit). So a full or read-only disk, or a
    /// lock held elsewhere, shows here, while frequent health checks cost at most one small commit a second.
    public nonisolated func checkWritable() async throws {
        if let last = lastDurableCommit.withLock({ $0 }), ContinuousClock.now - last < Self.writeProofLifetime {
            return
        }
        try await writeProbe()
    }

    private func writeProbe() async throws {
        _ = try await write(.probe)
    }

    // MARK: - Reading

    /// One record by id, or nil.
    public func operation(id: Int64) throws -> AuditRecord? {
        commitDeferred(endingTimer: false)
        return try wrap {
            try statement(Self.operationSQL).rows([.integer(id)]).first.map(AuditRecord.init(row:))
        }
    }

    /// A page of records matching `query`, in `query.order`. (The daemon's readers query through an
    /// `AuditReader`, off this store's queue.)
    /// - Throws: `AuditStoreError.invalidLimit`, `.database`.
    public func query(_ query: AuditQuery) throws -> AuditPage {
        let (sql, values) = try Self.select(query)
        commitDeferred(endingTimer: false)
        return try wrap { Self.page(try statement(sql).rows(values), limit: query.limit) }
    }

    /// The SELECT of one record by id.
    static let operationSQL = "SELECT \(AuditColumn.selectList) FROM operations WHERE id = ?"

    /// The page that the rows of `select(_:)` (one more than `limit` if there is a next page) make.
    static func page(_ rows: [[SQLiteValue]], limit: Int) -> AuditPage {
        var records = rows.map(AuditRecord.init(row:))
        var next: AuditCursor?
        if records.count > limit {
            records.removeLast()
            if let last = records.last {
                next = AuditCursor(requestedAtMicroseconds: last.requestedAt.microsecondsSince1970, id: last.id)
            }
        }
        return AuditPage(records: records, nextCursor: next)
    }

    /// The highest id written so far (0 for an empty log). Every row with a lower id is committed already:
    /// ids are given out under SQLite's write lock, in commit order.
    public func latestID() throws -> Int64 {
        commitDeferred(endingTimer: false)
        return try wrap {
            try statement("SELECT COALESCE(MAX(id), 0) FROM operations").rows([]).first?.first?.integer ?? 0
        }
    }

    /// The ids of the rows still `started` (operations under way, or left by a process that died and not yet
    /// marked interrupted), up to `id`, ascending.
    public func startedIDs(through id: Int64) throws -> [Int64] {
        try wrap {
            try statement("SELECT id FROM operations WHERE state = 'started' AND id <= ? ORDER BY id")
                .rows([.integer(id)]).compactMap { $0.first?.integer }
        }
    }

    /// SQLite's plan for `query`, one line per step; tests use it to prove that an index serves each filter.
    package func queryPlan(_ query: AuditQuery) throws -> String {
        let (sql, values) = try Self.select(query)
        return try wrap {
            try database.query("EXPLAIN QUERY PLAN " + sql, values).compactMap { $0.last?.text }
                .joined(separator: "\n")
        }
    }

    /// The SELECT for one page of `query` (one row more than the limit, to know whether a next page exists).
    static func select(_ query: AuditQuery) throws(AuditStoreError) -> (String, [SQLiteValue]) {
        guard (1...AuditQuery.maximumLimit).contains(query.limit) else {
            throw AuditStoreError.invalidLimit(query.limit)
        }
        var conditions: [String] = []
        var values: [SQLiteValue] = []
        func add(_ condition: String, _ value: SQLiteValue) {
            conditions.append(condition)
            values.append(value)
        }
        if let domain = query.domain {
            if let uuid = UUID(uuidString: domain) {
                add("domain_uuid = ?", .text(uuid.uuidString.lowercased()))
            } else {
                add("domain_name = ?", .text(domain))
            }
        }
        if let action = query.action { add("action = ?", .text(action)) }
        if let source = query.source { add("source = ?", .text(source)) }
        if let result = query.result { add("result = ?", .text(result.rawValue)) }
        if let requester = query.requester { add("requester = ?", .text(requester)) }
        if let patterns = query.domainPatterns {
            if patterns.isEmpty {
                conditions.append("0")
            } else {
                conditions.append("(" + patterns.map { _ in "domain_name GLOB ?" }.joined(separator: " OR ") + ")")
                values += patterns.map(SQLiteValue.text)
            }
        }
        if let since = query.since { add("requested_at >= ?", .integer(since.microsecondsSince1970)) }
        if let until = query.until { add("requested_at < ?", .integer(until.microsecondsSince1970)) }
        if let ids = query.ids {
            conditions.append("id BETWEEN ? AND ?")
            values += [.integer(ids.lowerBound), .integer(ids.upperBound)]
        }
        if let cursor = query.cursor {
            let position: [SQLiteValue] = [.integer(cursor.requestedAtMicroseconds), .integer(cursor.id)]
            switch query.order {
            case .newestFirst:
                conditions.append("(requested_at, id) < (?, ?)")
                values += position
            case .oldestFirst:
                conditions.append("(requested_at, id) > (?, ?)")
                values += position
            case .written: add("id > ?", .integer(cursor.id))
            }
        }
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        values.append(.integer(Int64(query.limit + 1)))
        let source: String
        let ordering: String
        switch query.order {
        case .newestFirst: (source, ordering) = ("operations", "requested_at DESC, id DESC")
        case .oldestFirst: (source, ordering) = ("operations", "requested_at, id")
        // NOT INDEXED keeps SQLite on the table's own rowid order (it may still seek by id).
        case .written: (source, ordering) = ("operations NOT INDEXED", "id")
        }
        return (
            "SELECT \(AuditColumn.selectList) FROM \(source)\(whereClause) ORDER BY \(ordering) LIMIT ?",
            values
        )
    }

    func statement(_ sql: String) throws(SQLiteError) -> Statement {
        if let cached = queryStatements[sql] { return cached }
        let prepared = try database.prepare(sql)
        queryStatements[sql] = prepared
        return prepared
    }

    /// Runs `body`, turning its `SQLiteError` into `AuditStoreError.database`.
    func wrap<T>(_ body: () throws -> T) throws(AuditStoreError) -> T {
        do {
            if !sync.synchronousIsFull { try restoreSynchronousFull() }
            return try body()
        } catch let error as SQLiteError {
            throw .database(error)
        } catch let error as AuditStoreError {
            throw error
        } catch {
            throw .database(SQLiteError(code: SQLITE_ERROR, message: "\(error)"))
        }
    }
}

/// Rows given to `AuditStore.recordEventually`, and whether a timer will commit them.
struct DeferredRows: Sendable {
    var waiting: [(AuditIntent, AuditCompletion)] = []
    var timerRunning = false
}
