public import FoundationEssentials

/// Filters for reading the audit log one page at a time, newest first unless `order` says otherwise.
///
/// Every filter is optional; set ones are combined with AND.
public struct AuditQuery: Sendable, Equatable {
    /// A domain name, or a UUID (matched against the resolved UUID).
    public var domain: String?
    public var action: String?
    public var source: String?
    public var result: AuditResult?
    public var requester: String?
    /// Only rows whose domain name matches one of these glob patterns (`*`, `?`); nil for no restriction.
    /// An empty list matches nothing. Used to confine a scoped API token to its domains.
    public var domainPatterns: [String]?
    /// Rows requested at or after this instant.
    public var since: Date?
    /// Rows requested strictly before this instant.
    public var until: Date?
    /// Only rows whose id is in this range (ids grow in the order rows were written); nil for any id.
    public var ids: ClosedRange<Int64>?
    /// Rows per page, 1…`AuditQuery.maximumLimit`.
    public var limit: Int
    /// Where the previous page ended; nil for the first page.
    public var cursor: AuditCursor?
    /// The order of the rows, and so which way `cursor` moves.
    public var order: AuditOrder = .newestFirst

    public static let defaultLimit = 50
    public static let maximumLimit = 1000

    public init(
        domain: String? = nil,
        action: String? = nil,
        source: String? = nil,
        result: AuditResult? = nil,
        requester: String? = nil,
        domainPatterns: [String]? = nil,
        since: Date? = nil,
        until: Date? = nil,
        limit: Int = AuditQuery.defaultLimit,
        cursor: AuditCursor? = nil
    ) {
        self.domain = domain
        self.action = action
        self.source = source
        self.result = result
        self.requester = requester
        self.domainPatterns = domainPatterns
        self.since = since
        self.until = until
        self.limit = limit
        self.cursor = cursor
    }
}

/// The order a query returns rows in.
public enum AuditOrder: Sendable, Equatable {
    /// By request time, then id, descending: the order of `fencegate audit` and `GET /operations`.
    case newestFirst
    /// By request time, then id, ascending: the reverse, served by the same indexes.
    case oldestFirst
    /// By id, ascending: the order the rows were written in. Read along the table itself, never an index, so
    /// a page bounded by `ids` costs only the rows in that range whatever the filters.
    case written
}

/// One page of audit records and the cursor for the next, if there is one.
public struct AuditPage: Sendable, Equatable {
    public var records: [AuditRecord]
    /// Nil on the last page.
    public var nextCursor: AuditCursor?
}

/// A position in the audit log (keyset pagination on request time, then id), as `MICROSECONDS-ID`.
///
/// Clients should treat it as opaque and pass it back unchanged; any text of that form is a valid position.
public struct AuditCursor: Sendable, Equatable, CustomStringConvertible {
    public let requestedAtMicroseconds: Int64
    public let id: Int64

    /// The position just after the row requested at `requestedAtMicroseconds` with `id`.
    public init(requestedAtMicroseconds: Int64, id: Int64) {
        self.requestedAtMicroseconds = requestedAtMicroseconds
        self.id = id
    }

    /// Parses a cursor previously produced by `description`: two decimal numbers of at most 18 digits,
    /// joined by `-`.
    /// - Throws: `AuditStoreError.invalidCursor` for anything else.
    public init(encoded: String) throws {
        let parts = encoded.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2,
            parts.allSatisfy({ (1...18).contains($0.count) && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
            let time = Int64(parts[0]), let id = Int64(parts[1])
        else { throw AuditStoreError.invalidCursor(encoded) }
        self.init(requestedAtMicroseconds: time, id: id)
    }

    /// The text form, e.g. `1795583769135103-42`.
    public var description: String { "\(requestedAtMicroseconds)-\(id)" }
}
