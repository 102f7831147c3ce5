public import Store

/// An audit record as JSON, the same for the HTTP API (`GET /operations`, schema `Operation` in
/// `openapi.yaml`) and `fencegate audit --json`: snake_case keys, RFC 3339 times, durations in seconds, and
/// `null` for what is not known. A new audit field is one key here.
public struct OperationJSON: Encodable, Sendable {
    public let record: AuditRecord
    /// Cluster mode's merged log: the host whose log the row is in (the key `host`, only then).
    public let host: String?

    public init(_ record: AuditRecord, host: String? = nil) {
        self.record = record
        self.host = host
    }

    private enum CodingKeys: String, CodingKey {
        case id
        case requestedAt = "requested_at"
        case finishedAt = "finished_at"
        case durationSeconds = "duration_seconds"
        case source, requester
        case clientAddress = "client_address"
        case target
        case domainName = "domain_name"
        case domainUUID = "domain_uuid"
        case action, state, result, power
        case errorCode = "error_code"
        case message
        case host
    }

    public func encode(to encoder: any Encoder) throws {
        // Optionals are encoded as null rather than left out: every key is always there.
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(record.id, forKey: .id)
        try container.encode(RFC3339.format(record.requestedAt), forKey: .requestedAt)
        try container.encode(record.finishedAt.map(RFC3339.format), forKey: .finishedAt)
        try container.encode(record.duration?.seconds, forKey: .durationSeconds)
        try container.encode(record.source, forKey: .source)
        try container.encode(record.requester, forKey: .requester)
        try container.encode(record.clientAddress, forKey: .clientAddress)
        try container.encode(record.target, forKey: .target)
        try container.encode(record.domainName, forKey: .domainName)
        try container.encode(record.domainUUID, forKey: .domainUUID)
        try container.encode(record.action, forKey: .action)
        try container.encode(record.state.rawValue, forKey: .state)
        try container.encode(record.result?.rawValue, forKey: .result)
        try container.encode(record.powerState, forKey: .power)
        try container.encode(record.errorCode, forKey: .errorCode)
        try container.encode(record.message, forKey: .message)
        if let host { try container.encode(host, forKey: .host) }
    }
}

/// A page of the audit log as JSON (`GET /operations`, `fencegate audit --json`).
public struct OperationPageJSON: Encodable, Sendable {
    public let operations: [OperationJSON]
    /// The cursor for the next page, or null on the last.
    public let nextCursor: String?

    public init(_ page: AuditPage) {
        operations = page.records.map { OperationJSON($0) }
        nextCursor = page.nextCursor?.description
    }

    private enum CodingKeys: String, CodingKey {
        case operations
        case nextCursor = "next_cursor"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(operations, forKey: .operations)
        try container.encode(nextCursor, forKey: .nextCursor)
    }
}

/// A page of the cluster's merged audit log as JSON (`GET /operations?scope=cluster`, `fencegate audit
/// --cluster --json`): each operation with its `host`, and the hosts whose log could not be read.
public struct ClusterOperationPageJSON: Encodable, Sendable {
    public let page: ClusterAuditPage

    public init(_ page: ClusterAuditPage) {
        self.page = page
    }

    private enum CodingKeys: String, CodingKey {
        case operations
        case nextCursor = "next_cursor"
        case unavailableHosts = "unavailable_hosts"
    }

    private struct UnavailableHost: Encodable {
        let host: String
        let reason: String
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(page.entries.map { OperationJSON($0.record, host: $0.host) }, forKey: .operations)
        try container.encode(page.nextCursor?.description, forKey: .nextCursor)
        // An array, not an object keyed by host: host names are data, not keys to convert.
        let unavailable = page.unavailableHosts.sorted { $0.key < $1.key }.map {
            UnavailableHost(host: $0.key, reason: $0.value)
        }
        try container.encode(unavailable, forKey: .unavailableHosts)
    }
}
