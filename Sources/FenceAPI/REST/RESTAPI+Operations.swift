import FenceCore
import FoundationEssentials
import Store

extension RESTAPI {
    /// `GET /operations`: the audit log, newest first, filtered and paged. A token limited to some domains
    /// sees only their operations.
    func listOperations(_ request: HTTPRequest, token: AccessToken) async throws -> HTTPResponse {
        var query = AuditQuery()
        let parameters = request.query
        query.domain = try Self.text(parameters["domain"], name: "domain")
        query.action = try Self.text(parameters["action"], name: "action")
        query.source = try Self.text(parameters["source"], name: "source")
        query.requester = try Self.text(parameters["requester"], name: "requester")
        if let result = parameters["result"] {
            guard let parsed = AuditResult(rawValue: result) else {
                throw Problem.badRequest(
                    "result must be one of: \(AuditResult.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            query.result = parsed
        }
        query.since = try Self.time(parameters["since"], name: "since")
        query.until = try Self.time(parameters["until"], name: "until")
        if let limit = parameters["limit"] {
            guard let parsed = Int(limit), (1...AuditQuery.maximumLimit).contains(parsed) else {
                throw Problem.badRequest("limit must be an integer from 1 to \(AuditQuery.maximumLimit)")
            }
            query.limit = parsed
        }
        switch parameters["scope"] {
        case nil, "host":
            break
        case "cluster":
            // Cluster mode: every host's log, merged.
            var cursor: ClusterAuditCursor?
            if let text = parameters["cursor"] {
                if let parsed = ClusterAuditCursor(encoded: text) {
                    cursor = parsed
                } else if let hostCursor = try? AuditCursor(encoded: text) {
                    // A cursor of one host's log: every host's rows requested before its time.
                    cursor = ClusterAuditCursor(
                        requestedAtMicroseconds: hostCursor.requestedAtMicroseconds,
                        host: "",
                        id: hostCursor.id
                    )
                } else {
                    throw Problem.badRequest("cursor must be a next_cursor value from a previous page, unchanged")
                }
            }
            guard let page = await service.clusterOperations(query, after: cursor, visibleTo: token) else {
                throw Problem.noCluster
            }
            return try .json(encoding: ClusterOperationPageJSON(page))
        default:
            throw Problem.badRequest("scope must be host or cluster")
        }
        if let cursor = parameters["cursor"] {
            if let parsed = try? AuditCursor(encoded: cursor) {
                query.cursor = parsed
            } else if let merged = ClusterAuditCursor(encoded: cursor) {
                // A cursor of the merged log: this host's rows after that position.
                query.cursor = merged.cursor(forHost: service.hostName)
            } else {
                throw Problem.badRequest("cursor must be a next_cursor value from a previous page, unchanged")
            }
        }
        return try .json(encoding: OperationPageJSON(try await service.operations(query, visibleTo: token)))
    }

    /// `GET /operations/{id}`.
    func showOperation(_ text: String, token: AccessToken) async throws -> HTTPResponse {
        guard let id = Int64(text), id > 0 else { throw Problem.badRequest("an operation id is a positive integer") }
        guard let record = try await service.operation(id: id, visibleTo: token) else {
            throw Problem.operationNotFound(text)
        }
        return try .json(encoding: OperationJSON(record))
    }

    private static func text(_ value: String?, name: String) throws -> String? {
        guard let value else { return nil }
        guard (1...256).contains(value.count) else { throw Problem.badRequest("\(name) must have 1 to 256 characters") }
        return value
    }

    /// An RFC 3339 date-time, e.g. `2026-11-25T10:00:00Z` or with fractional seconds and an offset.
    private static func time(_ value: String?, name: String) throws -> Date? {
        guard let value else { return nil }
        if let date = RFC3339.parse(value) { return date }
        throw Problem.badRequest("\(name) must be an RFC 3339 date-time such as 2026-11-25T10:00:00Z")
    }
}
