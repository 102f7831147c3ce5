import FenceCore
import Foundation
import Store

/// JSON shapes printed by `--json`; snake_case keys, ISO 8601 times, durations in seconds.
enum JSONText {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

struct DomainJSON: Encodable {
    let name: String
    let uuid: String
    let state: String
    let power: String
    let persistent: Bool

    init(_ domain: DomainInfo) {
        name = domain.name
        uuid = domain.uuid
        state = domain.state.rawValue
        power = domain.power.rawValue
        persistent = domain.isPersistent
    }
}

struct OutcomeJSON: Encodable {
    let operationId: Int64
    let action: String
    let domain: DomainJSON
    let power: String
    let durationSeconds: Double
    let note: String?

    init(_ outcome: FenceOutcome) {
        operationId = outcome.operationID
        action = outcome.action.rawValue
        domain = DomainJSON(outcome.domain)
        power = outcome.power.rawValue
        durationSeconds = outcome.duration.seconds
        note = outcome.note
    }
}

struct AuditRecordJSON: Encodable {
    let id: Int64
    let requestedAt: String
    let finishedAt: String?
    let durationSeconds: Double?
    let source: String
    let requester: String?
    let clientAddress: String?
    let target: String
    let domainName: String?
    let domainUuid: String?
    let action: String
    let state: String
    let result: String?
    let power: String?
    let errorCode: String?
    let message: String?

    init(_ record: AuditRecord) {
        id = record.id
        requestedAt = formatTimestamp(record.requestedAt)
        finishedAt = record.finishedAt.map(formatTimestamp)
        durationSeconds = record.duration?.seconds
        source = record.source
        requester = record.requester
        clientAddress = record.clientAddress
        target = record.target
        domainName = record.domainName
        domainUuid = record.domainUUID
        action = record.action
        state = record.state.rawValue
        result = record.result?.rawValue
        power = record.powerState
        errorCode = record.errorCode
        message = record.message
    }
}

struct AuditPageJSON: Encodable {
    let operations: [AuditRecordJSON]
    let nextCursor: String?
}

/// Left-aligned columns separated by two spaces. Cells are escaped (`\n`, `\u{1B}`…): the audit log holds
/// text that requests supplied, and a table row must stay one row on the operator's terminal.
enum Table {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = ([header] + rows).map { $0.map(\.escapingControlCharacters) }
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// "2026-11-25T10:00:00.123Z"
func formatTimestamp(_ date: Date) -> String {
    RFC3339.format(date)
}

/// "0.004 s"
func formatDuration(_ duration: Duration) -> String {
    String(format: "%.3f s", duration.seconds)
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
