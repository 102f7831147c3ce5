import Foundation

extension AuditStore {
    /// Inserts finished rows in one transaction; for benchmarks that need a large audit log quickly.
    package func insertFinished(_ rows: [(AuditIntent, AuditCompletion)]) throws {
        try wrap {
            try database.transaction { () throws(SQLiteError) in
                let statement = try self.statement(
                    """
                    INSERT INTO operations (requested_at, finished_at, duration_us, source, requester, client_address,
                        target, domain_name, domain_uuid, action, state, result, power_state, error_code, message,
                        owner_pid, owner_start)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'finished', ?, ?, ?, ?, 0, 0)
                    """)
                for (intent, completion) in rows {
                    let requested = intent.requestedAt.microsecondsSince1970
                    let finished = completion.finishedAt.microsecondsSince1970
                    try statement.run([
                        .integer(requested), .integer(finished), .integer(finished - requested), .text(intent.source),
                        .optionalText(intent.requester), .optionalText(intent.clientAddress), .text(intent.target),
                        .optionalText(intent.domainName), .optionalText(intent.domainUUID), .text(intent.action),
                        .text(completion.result.rawValue), .optionalText(completion.powerState),
                        .optionalText(completion.errorCode), .optionalText(completion.message),
                    ])
                }
            }
        }
    }
}
