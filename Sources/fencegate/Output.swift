import FenceCore
import FoundationEssentials
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

/// Left-aligned columns separated by two spaces. Cells are escaped (`\n`, `\u{1B}`…): the audit log holds
/// text that requests supplied, and a table row must stay one row on the operator's terminal.
enum Table {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = ([header] + rows).map { $0.map(\.escapingControlCharacters) }
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padded(toWidth: widths[column])
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

extension String {
    /// This text with spaces after it up to `width` characters (a longer text is left whole).
    func padded(toWidth width: Int) -> String {
        self + String(repeating: " ", count: max(0, width - count))
    }
}

/// "0.004 s"
func formatDuration(_ duration: Duration) -> String {
    let milliseconds = Int((duration.seconds * 1000).rounded())
    let whole = milliseconds.magnitude
    return "\(milliseconds < 0 ? "-" : "")\(whole / 1000).\(zeroPadded(whole % 1000, width: 3)) s"
}
