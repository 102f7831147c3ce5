/// Why the audit store could not do what was asked.
public enum AuditStoreError: Error, Sendable, CustomStringConvertible {
    /// The database (or its directory) could not be created or opened.
    case cannotOpen(path: String, reason: String)
    /// The database was written by a newer Fencegate whose schema this one does not know.
    case newerSchema(path: String, found: Int, known: Int)
    /// A statement failed; the database may be read-only, full, locked or damaged.
    case database(SQLiteError)
    /// A pagination cursor that this store did not produce.
    case invalidCursor(String)
    /// A query limit outside 1…`AuditQuery.maximumLimit`.
    case invalidLimit(Int)
    /// A query of the audit log ran longer than its time limit and was stopped (`AuditReader`).
    case queryStopped(after: Duration)
    /// A token with this name exists already.
    case tokenExists(String)
    /// Group or others may write the database: the audit log could be rewritten behind the service's back.
    case writableByOthers(path: String, mode: String)
    /// The database, or a directory on the way to it, could be replaced by another user (or it is a
    /// symbolic link).
    case untrusted(UntrustedLocation)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open the audit database \(path): \(reason)"
        case .newerSchema(let path, let found, let known):
            return "the audit database \(path) has schema version \(found), newer than this fencegate knows (\(known))"
        case .database(let error):
            return "audit database error: \(error)"
        case .invalidCursor:
            return "invalid cursor: pass the cursor value from a previous page unchanged"
        case .invalidLimit(let limit):
            return "invalid limit \(limit): use 1 to \(AuditQuery.maximumLimit)"
        case .queryStopped(let limit):
            return
                "the query of the audit log ran longer than \(limit) and was stopped; narrow it (since and until, domain, action, source, result, requester)"
        case .writableByOthers(let path, let mode):
            return
                "the audit database \(path) has mode \(mode): group or others could rewrite the audit log; fix with: chmod 600 \(path)"
        case .untrusted(let problem):
            return "refusing the audit database: \(problem)"
        case .tokenExists(let name):
            return "a token named '\(name)' exists already (names of revoked tokens are not reused)"
        }
    }
}
