public import Store

/// An audit record as JSON, the same for the HTTP API (`GET /operations`, schema `Operation` in
/// `openapi.yaml`) and `fencegate audit --json` / `--format json-lines`: snake_case keys, RFC 3339 times,
/// durations in seconds, and `null` for what is not known. The fields are `AuditRecord.exportedFields`.
public struct OperationJSON: Encodable, Sendable {
    public let record: AuditRecord
    /// Cluster mode's merged log: the host whose log the row is in (the key `host`, only then).
    public let host: String?

    public init(_ record: AuditRecord, host: String? = nil) {
        self.record = record
        self.host = host
    }

    public func encode(to encoder: any Encoder) throws {
        // Optionals are encoded as null rather than left out: every key is always there.
        var container = encoder.container(keyedBy: OperationFieldKey.self)
        for (name, value) in record.exportedFields(host: host) {
            let key = OperationFieldKey(name)
            switch value {
            case .integer(let number): try container.encode(number, forKey: key)
            case .seconds(let seconds): try container.encode(seconds, forKey: key)
            case .time(let date): try container.encode(RFC3339.format(date), forKey: key)
            case .text(let text): try container.encode(text, forKey: key)
            case .null: try container.encodeNil(forKey: key)
            }
        }
    }
}

/// A key of an operation's JSON object: one of `AuditRecord.exportedFieldNames`.
private struct OperationFieldKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }

    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
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
