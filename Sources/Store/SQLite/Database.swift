internal import CSQLite

/// One open SQLite connection; owns the `sqlite3*` and closes it in `deinit`.
///
/// `@unchecked Sendable` because the handle is only ever used from one serial queue at a time:
/// `AuditStore` is an actor whose executor is that queue, and it is the only owner of its `Database`.
/// SQLite itself is built thread-safe (serialized) on Debian, so even a mistake would not corrupt memory.
/// Package-visible so that tests can hold a lock from a second, independent connection.
package final class Database: @unchecked Sendable {
    private let handle: OpaquePointer
    /// The path the database was opened at.
    let path: String

    /// Opens (creating if needed) the database at `path`. Calls `sqlite3_open_v2`.
    ///
    /// - Throws: `SQLiteError` if the file cannot be opened; a half-opened handle is closed first.
    package init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        var pointer: OpaquePointer?
        var flags = SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_EXRESCODE
        flags |= readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let status = sqlite3_open_v2(path, &pointer, flags, nil)
        guard status == SQLITE_OK, let pointer else {
            let message = pointer.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let pointer { sqlite3_close_v2(pointer) }
            throw SQLiteError(code: status, message: "cannot open database at \(path): \(message)")
        }
        self.handle = pointer
        self.path = path
    }

    deinit {
        sqlite3_close_v2(handle)
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

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// Sets the busy timeout in milliseconds. Calls `sqlite3_busy_timeout`.
    func setBusyTimeout(milliseconds: Int32) throws(SQLiteError) {
        let status = sqlite3_busy_timeout(handle, milliseconds)
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
}
