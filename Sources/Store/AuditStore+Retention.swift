public import FoundationEssentials

/// Which finished rows a retention rule applies to (`AuditStore.deleteFinishedRows`).
public enum AuditRowClass: Sendable, Equatable {
    /// Rows whose action is one of `actions`, not refused: requests that changed, or tried to change, a
    /// domain's state.
    case changes(actions: [String])
    /// Every other row: actions not among `actions` (reads), and refused requests of any action.
    case others(actions: [String])

    /// The SQL condition and its values.
    var condition: (sql: String, values: [SQLiteValue]) {
        switch self {
        case .changes(let actions):
            guard !actions.isEmpty else { return ("0", []) }
            return (
                "action IN (\(Self.placeholders(actions.count))) AND result != 'refused'", actions.map(SQLiteValue.text)
            )
        case .others(let actions):
            guard !actions.isEmpty else { return ("1", []) }
            return (
                "(action NOT IN (\(Self.placeholders(actions.count))) OR result = 'refused')",
                actions.map(SQLiteValue.text)
            )
        }
    }

    private static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }
}

extension AuditStore {
    /// Deletes up to `limit` finished rows of `rows` requested before `cutoff`, in one transaction; returns how
    /// many it deleted (fewer than `limit`: none of them is left). A row still `started` is never deleted. In a store that `syncsCompletionsLater` the commit does not wait for the disk
    /// (it is synced with the next commit): a deletion lost to a power loss is simply made again.
    ///
    /// An index serves the search (the time index, or for changes the one by action and time), in the
    /// index's order: no sort of every expired row, which would cost each call as much as all of them. Each
    /// call holds the store's queue (and so the fences' rows) for one small transaction only: call it again,
    /// with pauses, until it returns less than `limit`.
    /// - Throws: `AuditStoreError.database`.
    public func deleteFinishedRows(_ rows: AuditRowClass, requestedBefore cutoff: Date, limit: Int) throws -> Int {
        let (condition, values) = rows.condition
        let sql = """
            DELETE FROM operations WHERE id IN (
                SELECT id FROM operations
                WHERE requested_at < ? AND state != 'started' AND \(condition)
                LIMIT ?
            )
            """
        let parameters = [.integer(cutoff.microsecondsSince1970)] + values + [.integer(Int64(limit))]
        return try wrap {
            try commit(synced: !syncsCompletionsLater) { () throws(SQLiteError) in
                try statement(sql).run(parameters)
                return database.changes
            }
        }
    }

    /// SQLite's plan for `deleteFinishedRows`' search; tests use it to prove that an index serves it.
    package func retentionPlan(_ rows: AuditRowClass) throws -> String {
        let (condition, values) = rows.condition
        let sql = """
            SELECT id FROM operations WHERE requested_at < ? AND state != 'started' AND \(condition) LIMIT ?
            """
        return try wrap {
            try database.query("EXPLAIN QUERY PLAN " + sql, [.integer(0)] + values + [.integer(1)])
                .compactMap { $0.last?.text }.joined(separator: "\n")
        }
    }
}
