import FenceCore
import Foundation
import Store

extension FenceHTTPAPI {
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
                    "result must be one of: \(AuditResult.allCases.map(\.rawValue).joined(separator: ", "))")
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
        if let cursor = parameters["cursor"] {
            guard let parsed = try? AuditCursor(encoded: cursor) else {
                throw Problem.badRequest("cursor must be a next_cursor value from a previous page, unchanged")
            }
            query.cursor = parsed
        }
        if !token.domainPatterns.isEmpty { query.domainPatterns = token.domainPatterns }
        let page: AuditPage
        do {
            page = try await service.store.query(query)
        } catch {
            throw FenceError.auditUnavailable(reason: "\(error)")
        }
        return .json(
            .object([
                ("operations", .array(page.records.map(Self.operationJSON))),
                ("next_cursor", .optional(page.nextCursor?.description)),
            ]))
    }

    /// `GET /operations/{id}`.
    func showOperation(_ text: String, token: AccessToken) async throws -> HTTPResponse {
        guard let id = Int64(text), id > 0 else { throw Problem.badRequest("an operation id is a positive integer") }
        let record: AuditRecord?
        do {
            record = try await service.store.operation(id: id)
        } catch {
            throw FenceError.auditUnavailable(reason: "\(error)")
        }
        guard let record, token.domainPatterns.isEmpty || record.domainName.map(token.permits(domainNamed:)) == true
        else { throw Problem.operationNotFound(text) }
        return .json(Self.operationJSON(record))
    }

    static func operationJSON(_ record: AuditRecord) -> JSONValue {
        .object([
            ("id", .integer(record.id)),
            ("requested_at", .string(timestamp(record.requestedAt))),
            ("finished_at", .optional(record.finishedAt.map(timestamp))),
            ("duration_seconds", record.duration.map { .number($0.seconds) } ?? .null),
            ("source", .string(record.source)),
            ("requester", .optional(record.requester)),
            ("client_address", .optional(record.clientAddress)),
            ("target", .string(record.target)),
            ("domain_name", .optional(record.domainName)),
            ("domain_uuid", .optional(record.domainUUID)),
            ("action", .string(record.action)),
            ("state", .string(record.state.rawValue)),
            ("result", .optional(record.result?.rawValue)),
            ("power", .optional(record.powerState)),
            ("error_code", .optional(record.errorCode)),
            ("message", .optional(record.message)),
        ])
    }

    static func timestamp(_ date: Date) -> String {
        RFC3339.format(date)
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
