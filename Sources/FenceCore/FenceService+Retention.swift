public import FoundationEssentials
import Store

/// How long the audit log keeps its rows (`FenceService.deleteExpiredAuditRows`).
///
/// Fences are what the log is for, and they are few; most rows are reads and refusals (an agent's monitor
/// every minute is about 330 MB a year per fence device, a scanner's refused requests up to 125 rows a minute).
/// Kept without end, those would fill the disk in the long run, and a full disk stops every fence, which
/// needs its row first.
public struct AuditRetention: Sendable, Equatable, CustomStringConvertible {
    /// How long rows of requests that changed, or tried to change, a domain's state (every action but
    /// `status`: off, on, reboot, shutdown, graceful-reboot, nmi), refused ones aside, are kept; nil: forever.
    public var changes: Duration?
    /// How long every other row is kept: reads (status, list, monitor, the GETs of domains, fence_xvm's
    /// unsupported requests), refused requests of any action, and the summary rows of both; nil: forever.
    public var others: Duration?
    /// Rows deleted in one transaction: each holds the store's queue, and so a fence's rows, that long.
    package var batchSize = 500
    /// The pause between two transactions, in which the fences' rows go first.
    package var pause: Duration = .milliseconds(20)

    /// `others` by default: 90 days.
    public static let defaultOthers: Duration = .seconds(90 * 86_400)

    public init(changes: Duration? = nil, others: Duration? = AuditRetention.defaultOthers) {
        self.changes = changes
        self.others = others
    }

    /// "changes kept forever, reads and refusals 90 days".
    public var description: String {
        func kept(_ age: Duration?) -> String {
            guard let age else { return "forever" }
            let days = Double(age.components.seconds) / 86_400
            return days == days.rounded() ? "\(Int(days)) days" : "\(age)"
        }
        return "changes kept \(kept(changes)), reads and refusals \(kept(others))"
    }
}

extension FenceService {
    /// The actions whose rows `AuditRetention.changes` governs: every action but `status`.
    static let changingActions = FenceAction.allCases.filter { $0 != .status }.map(\.rawValue)

    /// Deletes the audit rows that `configuration.auditRetention` no longer keeps, oldest first, in
    /// transactions of a few hundred rows with a pause between two, so that a fence's rows never wait long
    /// behind them; returns how many it deleted, also counted in `fencegate_audit_rows_deleted_total`. A row
    /// of an operation still under way is never deleted. Freed pages are reused by new rows: with retention
    /// the database stops growing, it does not shrink.
    /// - Throws: `AuditStoreError` if a deletion fails (the rows deleted before stay deleted);
    ///   `CancellationError`.
    public func deleteExpiredAuditRows(now: Date = Date()) async throws -> Int {
        let retention = configuration.auditRetention
        let rules: [(AuditRowClass, Duration?)] = [
            (.changes(actions: Self.changingActions), retention.changes),
            (.others(actions: Self.changingActions), retention.others),
        ]
        var deleted = 0
        for (rows, age) in rules {
            guard let age else { continue }
            let cutoff = now.addingTimeInterval(-age.seconds)
            while true {
                let count = try await store.deleteFinishedRows(
                    rows,
                    requestedBefore: cutoff,
                    limit: retention.batchSize
                )
                deleted += count
                if count > 0 { metrics.auditRowsDeleted(count) }
                guard count == retention.batchSize else { break }
                try await Task.sleep(for: retention.pause)
            }
        }
        return deleted
    }
}
