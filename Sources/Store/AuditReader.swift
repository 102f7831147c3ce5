internal import CSQLite

/// Queries of the audit log for a daemon's readers (`GET /operations`, another cluster host's page), on a
/// read-only connection and a queue of their own.
///
/// The store's queue writes every fence's rows. A query run there, however long (a filter that no index
/// serves, over millions of rows), held every fence's first row, and so the fence, until it ended. Here it
/// holds neither: a WAL reader does not wait for the writer, nor the writer for it. Queries run one at a
/// time, and one still running after `timeLimit` is stopped (`AuditStoreError.queryStopped`): one query
/// cannot keep a core busy, nor the log's WAL from being checkpointed, for longer. Outside WAL mode they run
/// on the store's queue, as before, without the limit.
public actor AuditReader {
    nonisolated let executor: SerialQueueExecutor
    /// Nil when the log is not in WAL mode: a reader would then hold a lock that the store's commits wait
    /// for, so queries go to the store's own queue, as before.
    private let database: Database?
    private let store: AuditStore
    private var statements: [String: Statement] = [:]
    /// The longest one query may run.
    public nonisolated let timeLimit: Duration

    /// The longest one query may run, by default.
    public static let defaultTimeLimit: Duration = .seconds(5)

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    init(store: AuditStore, timeLimit: Duration) throws(SQLiteError) {
        var database: Database?
        if store.readsBesideWrites {
            database = try Database(path: store.path, access: store.seesLaterCommits ? .readOnly : .immutable)
            try database?.setBusyTimeout(milliseconds: TokenReader.busyTimeoutMilliseconds)
        }
        self.executor = SerialQueueExecutor(label: "fencegate.audit-reader")
        self.database = database
        self.store = store
        self.timeLimit = timeLimit
    }

    /// A page of records matching `query`, in `query.order`, as `AuditStore.query` gives it: rows of requests
    /// that changed nothing, still waiting for their commit, are committed first.
    /// - Throws: `AuditStoreError.invalidLimit`, `.queryStopped`, `.database`.
    public func query(_ query: AuditQuery) async throws(AuditStoreError) -> AuditPage {
        let (sql, values) = try AuditStore.select(query)
        guard database != nil else { return try await onStoresQueue { try await $0.query(query) } }
        await commitWaitingRows()
        return AuditStore.page(try run(sql, values), limit: query.limit)
    }

    /// One record by id, or nil.
    /// - Throws: `AuditStoreError.queryStopped`, `.database`.
    public func operation(id: Int64) async throws(AuditStoreError) -> AuditRecord? {
        guard database != nil else { return try await onStoresQueue { try await $0.operation(id: id) } }
        await commitWaitingRows()
        return try run(AuditStore.operationSQL, [.integer(id)]).first.map(AuditRecord.init(row:))
    }

    /// Runs `observer` at every check of a query's time limit (every 1,000 of SQLite's instructions), on the
    /// reader's thread. For tests only: one that blocks there holds a query mid-run, standing in for a query
    /// over millions of rows.
    package func observeQueryProgress(_ observer: (@Sendable () -> Void)?) {
        database?.progressObserver = observer
    }

    /// Rows of requests that changed nothing, waiting for a commit, are committed first: the hop waits too
    /// for a commit under way on the store's queue, whose rows this connection would not see yet.
    private func commitWaitingRows() async {
        await store.commitDeferred(endingTimer: false)
    }

    /// A query on the store's own connection, where this reader has none (see `init`).
    private func onStoresQueue<T: Sendable>(
        _ body: (AuditStore) async throws -> T
    ) async throws(AuditStoreError) -> T {
        do {
            return try await body(store)
        } catch let error as AuditStoreError {
            throw error
        } catch {
            throw .database(SQLiteError(code: SQLITE_ERROR, message: "\(error)"))
        }
    }

    /// Runs one SELECT within the time limit.
    private func run(_ sql: String, _ values: [SQLiteValue]) throws(AuditStoreError) -> [[SQLiteValue]] {
        guard let database else { preconditionFailure("queries without a connection of their own go to the store") }
        database.stopStatements(runningPast: .now + timeLimit)
        defer { database.stopStatements(runningPast: nil) }
        do throws(SQLiteError) {
            return try statement(sql).rows(values)
        } catch  where error.primaryCode == SQLITE_INTERRUPT {
            throw .queryStopped(after: timeLimit)
        } catch {
            throw .database(error)
        }
    }

    private func statement(_ sql: String) throws(SQLiteError) -> Statement {
        if let cached = statements[sql] { return cached }
        guard let database else { preconditionFailure("queries without a connection of their own go to the store") }
        let prepared = try database.prepare(sql)
        statements[sql] = prepared
        return prepared
    }
}

extension AuditStore {
    /// A reader of this log for queries off this store's queue (see `AuditReader`), on a read-only connection
    /// of its own.
    /// - Throws: `AuditStoreError.database` if the file cannot be opened again.
    public nonisolated func reader(
        timeLimit: Duration = AuditReader.defaultTimeLimit
    ) throws(AuditStoreError)
        -> AuditReader
    {
        do throws(SQLiteError) {
            return try AuditReader(store: self, timeLimit: timeLimit)
        } catch {
            throw .database(error)
        }
    }
}
