extension AuditStore {
    /// Inserts finished rows in one transaction; for benchmarks that need a large audit log quickly.
    package func insertFinished(_ rows: [(AuditIntent, AuditCompletion)]) throws {
        // Owner 0: no live process, but finished rows are never touched by crash recovery.
        let owner = ProcessIdentity(pid: 0, startTicks: 0)
        try wrap {
            try database.transaction { () throws(SQLiteError) in
                for (intent, completion) in rows { _ = try perform(.insert(intent, completion, owner)) }
            }
        }
    }
}
