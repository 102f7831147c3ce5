public import Foundation

/// Filters for reading the audit log, newest first, one page at a time.
///
/// Every filter is optional; set ones are combined with AND.
public struct AuditQuery: Sendable, Equatable {
    /// A domain name, or a UUID (matched against the resolved UUID).
    public var domain: String?
    public var action: String?
    public var source: String?
    public var result: AuditResult?
    public var requester: String?
    /// Rows requested at or after this instant.
    public var since: Date?
    /// Rows requested strictly before this instant.
    public var until: Date?
    /// Rows per page, 1…`AuditQuery.maximumLimit`.
    public var limit: Int
    /// Where the previous page ended; nil for the first page.
    public var cursor: AuditCursor?

    public static let defaultLimit = 50
    public static let maximumLimit = 1000

    public init(
        domain: String? = nil, action: String? = nil, source: String? = nil, result: AuditResult? = nil,
        requester: String? = nil, since: Date? = nil, until: Date? = nil, limit: Int = AuditQuery.defaultLimit,
        cursor: AuditCursor? = nil
    ) {
        self.domain = domain
        self.action = action
        self.source = source
        self.result = result
        self.requester = requester
        self.since = since
        self.until = until
        self.limit = limit
        self.cursor = cursor
    }
}

/// One page of audit records and the cursor for the next, if there is one.
public struct AuditPage: Sendable, Equatable {
    public var records: [AuditRecord]
    /// Nil on the last page.
    public var nextCursor: AuditCursor?
}

/// An opaque position in the audit log (keyset pagination on request time, then id).
public struct AuditCursor: Sendable, Equatable, CustomStringConvertible {
    let requestedAtMicroseconds: Int64
    let id: Int64

    init(requestedAtMicroseconds: Int64, id: Int64) {
        self.requestedAtMicroseconds = requestedAtMicroseconds
        self.id = id
    }

    /// Parses a cursor previously produced by `description`.
    /// - Throws: `AuditStoreError.invalidCursor` for anything else.
    public init(encoded: String) throws {
        var base64 = encoded.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard encoded.count <= 64,
            let data = Data(base64Encoded: base64),
            let text = String(data: data, encoding: .utf8)
        else { throw AuditStoreError.invalidCursor(encoded) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let time = Int64(parts[1]), let id = Int64(parts[2]), id > 0 else {
            throw AuditStoreError.invalidCursor(encoded)
        }
        self.init(requestedAtMicroseconds: time, id: id)
    }

    /// The opaque, URL-safe text form.
    public var description: String {
        Data("v1:\(requestedAtMicroseconds):\(id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
