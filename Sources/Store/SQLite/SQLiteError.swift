internal import CSQLite

/// An error reported by libsqlite3, with its extended result code and message.
///
/// Bound values are never part of the error: the description names the SQL only.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The extended result code (the database is opened with `SQLITE_OPEN_EXRESCODE`).
    public let code: Int32
    /// `sqlite3_errmsg` of the connection, read right after the failing call.
    public let message: String
    /// The statement that failed, if any.
    public let sql: String?

    /// The primary result code, such as `SQLITE_BUSY` (5) for `SQLITE_BUSY_SNAPSHOT`.
    public var primaryCode: Int32 { code & 0xFF }

    /// True for the codes that mean the database cannot be written now: read-only, full, I/O error, locked.
    public var isUnwritable: Bool {
        [SQLITE_READONLY, SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PERM]
            .contains(primaryCode)
    }

    public var description: String {
        let name = String(cString: sqlite3_errstr(code))
        if let sql {
            return "SQLite error \(code) (\(name)): \(message) [in: \(sql)]"
        }
        return "SQLite error \(code) (\(name)): \(message)"
    }

    init(code: Int32, message: String, sql: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
    }
}
