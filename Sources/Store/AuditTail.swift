/// Follows the audit log as other processes write it: returns every operation matching a query exactly once,
/// when it has ended (finished, or marked interrupted), never while it is still `started`.
///
/// Rows are written at intent and updated at completion, and operations end in any order, so the tail keeps
/// two things: `seenThrough`, the highest id read (ids are given out in commit order, so no row with a lower
/// id can appear later), and `running`, the matching rows read while still started. Each `next` first
/// returns the backlog (rows that existed when following began, oldest first), then the running rows that
/// have ended, and rows written since (one page at a time, ascending id).
public struct AuditTail: Sendable {
    /// The caller's filters, without the result filter (a started row has no result yet).
    private let filters: AuditQuery
    private let result: AuditResult?
    private var seenThrough: Int64
    private var running: Set<Int64>
    /// The backlog still to return, or nil once it is done (or was not asked for).
    private var backlog: AuditQuery?

    /// Starts following `query` (its filters; its cursor and order are ignored). With `includingExisting`,
    /// operations that ended before this call come first; without it, only operations that end afterwards
    /// (including ones already under way) are returned.
    public init(_ store: AuditStore, query: AuditQuery, includingExisting: Bool) async throws {
        var filters = query
        filters.cursor = nil
        filters.result = nil
        filters.order = .written
        filters.limit = AuditQuery.maximumLimit
        self.filters = filters
        result = query.result
        // The latest id first, then the rows started up to it: a row is started in both reads or ended by the
        // second, and rows never return to started, so each is either running here or ended for the backlog.
        let latest = try await store.latestID()
        seenThrough = latest
        var running: Set<Int64> = []
        for id in try await store.startedIDs(through: latest) {
            var one = filters
            one.ids = id...id
            if try await !store.query(one).records.isEmpty { running.insert(id) }
        }
        self.running = running
        if includingExisting && latest > 0 {
            var backlog = query
            backlog.cursor = nil
            backlog.order = .oldestFirst
            backlog.limit = AuditQuery.maximumLimit
            backlog.ids = 0...latest
            self.backlog = backlog
        }
    }

    /// The operations ended since the last call that were not returned yet (at most about a page), or an empty
    /// array when there is nothing new: then wait for the log to change and call again.
    public mutating func next(_ store: AuditStore) async throws -> [AuditRecord] {
        while var page = backlog {
            let found = try await store.query(page)
            page.cursor = found.nextCursor
            backlog = found.nextCursor == nil ? nil : page
            // A row running when following began is returned when it ends, below, never from the backlog.
            let ended = found.records.filter { $0.state != .started && !running.contains($0.id) }
            if !ended.isEmpty { return ended }
        }
        var ended: [AuditRecord] = []
        for id in running.sorted() {
            guard let record = try await store.operation(id: id) else {
                running.remove(id)
                continue
            }
            if record.state == .started { continue }
            running.remove(id)
            if matchesResult(record) { ended.append(record) }
        }
        let latest = try await store.latestID()
        guard latest >= seenThrough else { throw AuditTailError.rewound(latest: latest, seen: seenThrough) }
        while seenThrough < latest {
            var page = filters
            page.ids = (seenThrough + 1)...latest
            let found = try await store.query(page)
            seenThrough = found.nextCursor == nil ? latest : found.records.last?.id ?? latest
            for record in found.records {
                if record.state == .started {
                    running.insert(record.id)
                } else if matchesResult(record) {
                    ended.append(record)
                }
            }
            if !ended.isEmpty { break }
        }
        return ended.sorted { $0.id < $1.id }
    }

    private func matchesResult(_ record: AuditRecord) -> Bool {
        result == nil || record.result == result
    }
}

/// Why a tail cannot go on.
public enum AuditTailError: Error, CustomStringConvertible {
    /// The log's newest operation is older than one already read: the database was replaced or restored.
    case rewound(latest: Int64, seen: Int64)

    public var description: String {
        switch self {
        case .rewound(let latest, let seen):
            "the audit database was replaced or restored (its newest operation is \(latest), operation \(seen) was "
                + "read already); start following it again"
        }
    }
}
