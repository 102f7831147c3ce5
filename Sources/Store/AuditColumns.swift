import FoundationEssentials

/// The columns of the `operations` table, named once: the INSERT, the SELECT and the decoding of a row all
/// come from this list and from `AuditRecord`'s two functions below it. A new audit field is a case here, a
/// migration, and a line in each of `insertValues` and `init(row:)`.
enum AuditColumn: String, CaseIterable {
    case id
    case requestedAt = "requested_at"
    case finishedAt = "finished_at"
    case duration = "duration_us"
    case source
    case requester
    case clientAddress = "client_address"
    case target
    case domainName = "domain_name"
    case domainUUID = "domain_uuid"
    case action
    case state
    case result
    case powerState = "power_state"
    case errorCode = "error_code"
    case message
    case ownerPID = "owner_pid"
    case ownerStart = "owner_start"

    /// The columns a record is read from, in SELECT order.
    static let selected: [AuditColumn] = allCases.filter { ![.ownerPID, .ownerStart].contains($0) }
    /// `id, requested_at, …` for a SELECT.
    static let selectList = selected.map(\.rawValue).joined(separator: ", ")
    /// The columns a new row is written with (all but `id`), in INSERT order.
    static let inserted: [AuditColumn] = allCases.filter { $0 != .id }
    /// `INSERT INTO operations (…) VALUES (?, …)`.
    static let insertSQL =
        "INSERT INTO operations (\(inserted.map(\.rawValue).joined(separator: ", "))) VALUES ("
        + inserted.map { _ in "?" }.joined(separator: ", ") + ")"
}

extension AuditRecord {
    /// The values of a new row, in `AuditColumn.inserted` order.
    static func insertValues(
        _ intent: AuditIntent,
        _ completion: AuditCompletion?,
        owner: ProcessIdentity
    ) -> [SQLiteValue] {
        let requested = intent.requestedAt.microsecondsSince1970
        let finished = completion?.finishedAt.microsecondsSince1970
        return AuditColumn.inserted.map { column -> SQLiteValue in
            switch column {
            case .id: .null  // assigned by SQLite
            case .requestedAt: .integer(requested)
            case .finishedAt: .optionalInteger(finished)
            case .duration: .optionalInteger(finished.map { $0 - requested })
            case .source: .text(intent.source)
            case .requester: .optionalText(intent.requester)
            case .clientAddress: .optionalText(intent.clientAddress)
            case .target: .text(intent.target)
            case .domainName: .optionalText(intent.domainName)
            case .domainUUID: .optionalText(intent.domainUUID)
            case .action: .text(intent.action)
            case .state: .text((completion == nil ? AuditState.started : .finished).rawValue)
            case .result: .optionalText(completion?.result.rawValue)
            case .powerState: .optionalText(completion?.powerState)
            case .errorCode: .optionalText(completion?.errorCode)
            case .message: .optionalText(completion?.message)
            case .ownerPID: .integer(Int64(owner.pid))
            case .ownerStart: .integer(owner.startTicks)
            }
        }
    }

    /// Decodes a row selected with `AuditColumn.selectList`.
    init(row: [SQLiteValue]) {
        func value(_ column: AuditColumn) -> SQLiteValue {
            row[AuditColumn.selectedIndex[column]!]
        }
        self.init(
            id: value(.id).integer ?? 0,
            intent: AuditIntent(
                source: value(.source).text ?? "",
                requester: value(.requester).text,
                clientAddress: value(.clientAddress).text,
                target: value(.target).text ?? "",
                domainName: value(.domainName).text,
                domainUUID: value(.domainUUID).text,
                action: value(.action).text ?? "",
                requestedAt: Date(microsecondsSince1970: value(.requestedAt).integer ?? 0)
            ),
            state: AuditState(rawValue: value(.state).text ?? "") ?? .started,
            result: value(.result).text.flatMap(AuditResult.init(rawValue:)),
            powerState: value(.powerState).text,
            errorCode: value(.errorCode).text,
            message: value(.message).text,
            finishedAt: value(.finishedAt).integer.map(Date.init(microsecondsSince1970:)),
            duration: value(.duration).integer.map { .microseconds($0) }
        )
    }
}

extension AuditColumn {
    /// Each selected column's position in a selected row.
    static let selectedIndex: [AuditColumn: Int] = Dictionary(
        uniqueKeysWithValues: selected.enumerated().map { ($0.element, $0.offset) }
    )
}
