internal import CSQLite

/// A prepared statement; owns the `sqlite3_stmt*` and finalizes it in `deinit`.
///
/// Holds a strong reference to its `Database`, so the connection outlives every statement.
/// Used only from the owning store's serial queue (see `Database`).
final class Statement: @unchecked Sendable {
    private let handle: OpaquePointer
    private let database: Database
    let sql: String

    /// Calls `sqlite3_prepare_v3` with `SQLITE_PREPARE_PERSISTENT`.
    init(database: Database, sql: String) throws(SQLiteError) {
        var pointer: OpaquePointer?
        let status = sqlite3_prepare_v3(
            database.rawHandle,
            sql,
            -1,
            UInt32(SQLITE_PREPARE_PERSISTENT),
            &pointer,
            nil
        )
        guard status == SQLITE_OK, let pointer else {
            throw database.error(status, sql: sql)
        }
        self.handle = pointer
        self.database = database
        self.sql = sql
    }

    deinit {
        sqlite3_finalize(handle)
    }

    /// Binds `values` (1-based, in order), steps to completion and returns every row; resets afterwards.
    func rows(_ values: [SQLiteValue] = []) throws(SQLiteError) -> [[SQLiteValue]] {
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }
        try bind(values)
        var result: [[SQLiteValue]] = []
        while true {
            let status = sqlite3_step(handle)
            switch status {
            case SQLITE_ROW:
                result.append(currentRow())
            case SQLITE_DONE:
                return result
            default:
                throw database.error(status, sql: sql)
            }
        }
    }

    /// Runs a statement that returns no rows.
    func run(_ values: [SQLiteValue] = []) throws(SQLiteError) {
        _ = try rows(values)
    }

    private func bind(_ values: [SQLiteValue]) throws(SQLiteError) {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let status: Int32
            switch value {
            case .null:
                status = sqlite3_bind_null(handle, index)
            case .integer(let integer):
                status = sqlite3_bind_int64(handle, index, integer)
            case .real(let real):
                status = sqlite3_bind_double(handle, index, real)
            case .text(let text):
                // With its byte length (the terminating NUL left out), so text holding a NUL is bound whole.
                status = text.utf8CString.withUnsafeBufferPointer {
                    sqlite3_bind_text(
                        handle,
                        index,
                        $0.baseAddress,
                        Int32(clamping: $0.count - 1),
                        fg_sqlite_transient()
                    )
                }
            }
            guard status == SQLITE_OK else { throw database.error(status, sql: sql) }
        }
    }

    private func currentRow() -> [SQLiteValue] {
        (0..<sqlite3_column_count(handle)).map { column in
            switch sqlite3_column_type(handle, column) {
            case SQLITE_INTEGER:
                return .integer(sqlite3_column_int64(handle, column))
            case SQLITE_FLOAT:
                return .real(sqlite3_column_double(handle, column))
            case SQLITE_NULL:
                return .null
            default:
                guard let text = sqlite3_column_text(handle, column) else { return .null }
                return .text(String(cString: text))
            }
        }
    }
}
