public import FoundationEssentials
public import Store

/// One value of an exported operation, typed so each format writes it its own way.
public enum OperationField: Sendable, Equatable {
    case integer(Int64)
    /// A duration in seconds.
    case seconds(Double)
    /// An instant, written as RFC 3339.
    case time(Date)
    case text(String)
    /// Not known (yet): JSON `null`, an empty CSV field.
    case null
}

extension AuditRecord {
    /// The fields of an exported operation, in order, named as in the HTTP API's `Operation` object
    /// (`openapi.yaml`); shared by its JSON (`OperationJSON`) and CSV (`OperationCSV`) so that tools reading either
    /// find the same names. `host` is added last in cluster mode's merged log. A new audit field is one line here.
    public func exportedFields(host: String? = nil) -> [(name: String, value: OperationField)] {
        func text(_ value: String?) -> OperationField { value.map(OperationField.text) ?? .null }
        var fields: [(name: String, value: OperationField)] = [
            ("id", .integer(id)),
            ("requested_at", .time(requestedAt)),
            ("finished_at", finishedAt.map(OperationField.time) ?? .null),
            ("duration_seconds", duration.map { .seconds($0.seconds) } ?? .null),
            ("source", .text(source)),
            ("requester", text(requester)),
            ("client_address", text(clientAddress)),
            ("target", .text(target)),
            ("domain_name", text(domainName)),
            ("domain_uuid", text(domainUUID)),
            ("action", .text(action)),
            ("state", .text(state.rawValue)),
            ("result", text(result?.rawValue)),
            ("power", text(powerState)),
            ("error_code", text(errorCode)),
            ("message", text(message)),
        ]
        if let host { fields.append(("host", .text(host))) }
        return fields
    }
}

extension AuditRecord {
    /// The names of `exportedFields()` without `host`, in order (a CSV header).
    public static let exportedFieldNames: [String] = AuditRecord(
        id: 0,
        intent: AuditIntent(
            source: "",
            requester: nil,
            clientAddress: nil,
            target: "",
            domainName: nil,
            domainUUID: nil,
            action: "",
            requestedAt: Date(timeIntervalSince1970: 0)
        ),
        state: .started,
        result: nil,
        powerState: nil,
        errorCode: nil,
        message: nil,
        finishedAt: nil,
        duration: nil
    ).exportedFields().map(\.name)
}
