internal import CSQLite

/// Queries of the audit log for a daemon's readers (`GET /operations`, another cluster host's page), on a
/// read-only connection and a queue of their own.
///
/// The store's queue writes every fence's rows. A query run there, however long (a filter that no index
/// serves, over millions of rows), held every fence's first row, and so the fence, until it ended. Here it
/// holds neither: a WAL reader does not wait for the writer, nor the writer for it. Queries run one at a
/// time, and one still running after `timeLimit` is stopped (`AuditStoreError.queryStopped`): a reader cannot
/// keep a core busy for longer, nor keep the log's WAL from being checkpointed.
public actor AuditReader {
    nonisolated let executor: SerialQueueExecutor
    private let database: Database
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
        let database = try Database(path: store.path, access: store.seesLaterCommits ? .readOnly : .immutable)
        try database.setBusyTimeout(milliseconds: TokenReader.busyTimeoutMilliseconds)
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
        await commitWaitingRows()
        return AuditStore.page(try run(sql, values), limit: query.limit)
    }

    /// One record by id, or nil.
    /// - Throws: `AuditStoreError.queryStopped`, `.database`.
    public func operation(id: Int64) async throws(AuditStoreError) -> AuditRecord? {
        await commitWaitingRows()
        return try run(AuditStore.operationSQL, [.integer(id)]).first.map(AuditRecord.init(row:))
    }

    /// Runs `observer` at every check of a query's time limit (every 1,000 of SQLite's instructions), on the
    /// reader's thread. For tests only: one that blocks there holds a query mid-run, standing in for a query
    /// over millions of rows.
    package func observeQueryProgress(_ observer: (@Sendable () -> Void)?) {
        database.progressObserver = observer
    }

    private func commitWaitingRows() async {
        if store.hasDeferredRows { await store.commitDeferred(endingTimer: false) }
    }

    /// Runs one SELECT within the time limit.
    private func run(_ sql: String, _ values: [SQLiteValue]) throws(AuditStoreError) -> [[SQLiteValue]] {
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
