import Locking

/// Reads the tokens on the calling thread, through a read-only connection of its own: no hop to the store's
/// queue, and no wait for its writes (a WAL reader never waits for the writer, nor for an fsync).
///
/// Made for checking a token on every request: `generation()` reads one integer that every change of a token
/// bumps in the same transaction (migration 6), whichever process or connection made it, so a caller keeps
/// its copy of `tokens()` until the generation changes, and a revocation committed anywhere is seen by the
/// next call. Calls are serialized by a lock; each one is a short read transaction.
public final class TokenReader: Sendable {
    private let connection: Locked<Connection>

    /// How long a read waits if SQLite asks it to (only while another connection recovers the WAL index).
    static let busyTimeoutMilliseconds: Int32 = 1000

    private struct Connection: ~Copyable {
        let database: Database
        /// Nil when the database predates the generation (a file opened read-only that was never migrated).
        let generation: Statement?
        let tokens: Statement
    }

    init(path: String, access: Database.Access) throws(SQLiteError) {
        let database = try Database(path: path, access: access)
        try database.setBusyTimeout(milliseconds: Self.busyTimeoutMilliseconds)
        let hasGeneration = try !database.query(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'token_generation'"
        ).isEmpty
        connection = Locked(
            Connection(
                database: database,
                generation: hasGeneration ? try database.prepare("SELECT generation FROM token_generation") : nil,
                tokens: try database.prepare("SELECT \(AuditStore.tokenColumns) FROM tokens ORDER BY id")
            )
        )
    }

    /// The tokens' generation now: it changes with every token created, revoked or deleted. Nil if the
    /// database keeps none (then every call of `tokens()` must be taken as a change).
    /// - Throws: `AuditStoreError.database`.
    public func generation() throws(AuditStoreError) -> Int64? {
        do throws(SQLiteError) {
            return try connection.withLock { connection throws(SQLiteError) in
                try connection.generation.map { statement throws(SQLiteError) in
                    try statement.rows().first?.first?.integer ?? 0
                }
            }
        } catch {
            throw .database(error)
        }
    }

    /// Every token, revoked ones included, oldest first, with the generation they are of (read in the same
    /// transaction).
    /// - Throws: `AuditStoreError.database`.
    public func tokens() throws(AuditStoreError) -> (generation: Int64?, tokens: [TokenRecord]) {
        do throws(SQLiteError) {
            return try connection.withLock { connection throws(SQLiteError) in
                try connection.database.execute("BEGIN")
                defer { try? connection.database.execute("COMMIT") }
                let generation = try connection.generation.map { statement throws(SQLiteError) in
                    try statement.rows().first?.first?.integer ?? 0
                }
                return (generation, try connection.tokens.rows().map(AuditStore.tokenRecord))
            }
        } catch {
            throw .database(error)
        }
    }
}

extension AuditStore {
    /// A reader of this database's tokens for the calling thread (see `TokenReader`), on a connection of its
    /// own that can only read.
    /// - Throws: `AuditStoreError.database` if the file cannot be opened again.
    public nonisolated func tokenReader() throws(AuditStoreError) -> TokenReader {
        do throws(SQLiteError) {
            return try TokenReader(path: path, access: seesLaterCommits ? .readOnly : .immutable)
        } catch {
            throw .database(error)
        }
    }
}
