internal import CSQLite

/// One open SQLite connection; owns the `sqlite3*` and closes it in `deinit`.
///
/// `@unchecked Sendable` because the handle is only ever used from one serial queue at a time:
/// `AuditStore` is an actor whose executor is that queue, and it is the only owner of its `Database`.
/// SQLite itself is built thread-safe (serialized) on Debian, so even a mistake would not corrupt memory.
/// Package-visible so that tests can hold a lock from a second, independent connection.
package final class Database: @unchecked Sendable {
    private let handle: OpaquePointer
    /// Kept for SQLite's progress handler (see `stopStatements(runningPast:)`), which gets it unretained.
    private let progressDeadline = ProgressDeadline()
    /// The path the database was opened at.
    let path: String
    /// How the connection uses its file.
    let access: Access

    /// How a connection may use its file.
    package enum Access {
        /// Read and write, creating the file if needed.
        case readWrite
        /// Read only; a WAL database then needs its `-shm` file to exist.
        case readOnly
        /// Read only, promising SQLite that nothing changes the file while it is open (`immutable=1`): no
        /// locks, no `-shm`. Only for a file nobody can write, such as one on a read-only filesystem.
        case immutable
    }

    /// Opens (creating if needed, for `.readWrite`) the database at `path`. Calls `sqlite3_open_v2`.
    ///
    /// - Throws: `SQLiteError` if the file cannot be opened; a half-opened handle is closed first.
    package init(path: String, access: Access = .readWrite) throws(SQLiteError) {
        var pointer: OpaquePointer?
        var flags = SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_EXRESCODE
        var filename = path
        switch access {
        // Never through a symbolic link: the audit log is where its path says, not where a link points.
        case .readWrite: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW
        case .readOnly: flags |= SQLITE_OPEN_READONLY
        case .immutable:
            flags |= SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
            filename = "file:" + Self.uriEscaped(path) + "?immutable=1"
        }
        let status = sqlite3_open_v2(filename, &pointer, flags, nil)
        guard status == SQLITE_OK, let pointer else {
            let message = pointer.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let pointer { sqlite3_close_v2(pointer) }
            throw SQLiteError(code: status, message: "cannot open database at \(path): \(message)")
        }
        self.handle = pointer
        self.path = path
        self.access = access
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// `path` for a `file:` URI: `%`, `?` and `#` percent-encoded, as SQLite's URI parser expects.
    private static func uriEscaped(_ path: String) -> String {
        var escaped = ""
        for character in path {
            switch character {
            case "%": escaped += "%25"
            case "?": escaped += "%3F"
            case "#": escaped += "%23"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// Runs one or more statements that return no rows. Calls `sqlite3_exec`.
    package func execute(_ sql: String) throws(SQLiteError) {
        let status = sqlite3_exec(handle, sql, nil, nil, nil)
        guard status == SQLITE_OK else { throw error(status, sql: sql) }
    }

    /// Prepares `sql` for repeated use.
    func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        try Statement(database: self, sql: sql)
    }

    /// Prepares, binds, runs to completion and returns every row.
    @discardableResult
    func query(_ sql: String, _ values: [SQLiteValue] = []) throws(SQLiteError) -> [[SQLiteValue]] {
        let statement = try prepare(sql)
        return try statement.rows(values)
    }

    /// The rowid of the last successful INSERT on this connection.
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// True if the main database was opened read-only, e.g. because its file or filesystem cannot be
    /// written (SQLite then falls back to reading). Calls `sqlite3_db_readonly`.
    var isReadOnly: Bool { sqlite3_db_readonly(handle, "main") == 1 }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// Rows changed by every statement since the connection opened: a transaction that changed none writes
    /// nothing to the WAL, and so syncs nothing.
    var totalChanges: Int64 { Int64(sqlite3_total_changes64(handle)) }

    /// Sets the busy timeout in milliseconds. Calls `sqlite3_busy_timeout`.
    func setBusyTimeout(milliseconds: Int32) throws(SQLiteError) {
        let status = sqlite3_busy_timeout(handle, milliseconds)
        guard status == SQLITE_OK else { throw error(status) }
    }

    /// Keeps the write-ahead log's file, at its size, when the last connection closes (SQLite would delete
    /// it), so that the next process reuses its space. Calls `sqlite3_file_control(SQLITE_FCNTL_PERSIST_WAL)`.
    func keepWriteAheadLogAtClose() throws(SQLiteError) {
        var on: Int32 = 1
        let status = sqlite3_file_control(handle, "main", SQLITE_FCNTL_PERSIST_WAL, &on)
        guard status == SQLITE_OK else { throw error(status) }
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if it throws.
    func transaction<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Builds the typed error for `status`, reading the message from this connection.
    func error(_ status: Int32, sql: String? = nil) -> SQLiteError {
        SQLiteError(code: status, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    /// The raw handle, for `Statement` only.
    var rawHandle: OpaquePointer { handle }

    /// Called at each check of the deadline `stopStatements(runningPast:)` sets (every 1,000 instructions of a
    /// statement running under one), on the statement's thread. For tests only: one that blocks here holds a
    /// statement mid-run, as a statement over millions of rows would be.
    package var progressObserver: (@Sendable () -> Void)? {
        get { progressDeadline.observer }
        set { progressDeadline.observer = newValue }
    }

    /// Makes every statement of this connection that is still running at `deadline` fail with
    /// `SQLITE_INTERRUPT` (the clock is read every 1,000 of SQLite's virtual machine instructions, about
    /// every few microseconds); nil removes the limit. Calls `sqlite3_progress_handler`.
    func stopStatements(runningPast deadline: ContinuousClock.Instant?) {
        progressDeadline.instant = deadline
        if deadline == nil {
            sqlite3_progress_handler(handle, 0, nil, nil)
        } else {
            sqlite3_progress_handler(
                handle,
                1000,
                stopsPastDeadline,
                Unmanaged.passUnretained(progressDeadline).toOpaque()
            )
        }
    }
}

/// The deadline `stopStatements(runningPast:)` set, read by SQLite's progress handler on the thread that runs
/// the statement (the connection's own).
final class ProgressDeadline {
    var instant: ContinuousClock.Instant?
    /// Called at every check first (see `Database.progressObserver`).
    var observer: (@Sendable () -> Void)?
}

/// SQLite's progress handler: nonzero (stop the statement) once the connection's deadline has passed.
private func stopsPastDeadline(_ context: UnsafeMutableRawPointer?) -> Int32 {
    guard let context else { return 0 }
    let progress = Unmanaged<ProgressDeadline>.fromOpaque(context).takeUnretainedValue()
    progress.observer?()
    guard let deadline = progress.instant else { return 0 }
    return ContinuousClock.now >= deadline ? 1 : 0
}
