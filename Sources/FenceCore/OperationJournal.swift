public import Store

/// An audit record as one entry of systemd's journal, in its native protocol (systemd.journal-fields(7),
/// "Native Journal Protocol"): `MESSAGE`, `PRIORITY` and `SYSLOG_IDENTIFIER`, then every exported field as
/// `FENCEGATE_` + its name in upper case (`FENCEGATE_ID`, `FENCEGATE_DOMAIN_NAME`…; unknown ones left out).
///
/// A value without a newline is written `KEY=value\n`; one with a newline (a message, a hostile requester) is
/// written binary-safe: `KEY\n`, its length as a 64-bit little-endian number, the bytes, `\n`.
public enum OperationJournal {
    /// The datagram for `record`.
    public static func entry(_ record: AuditRecord) -> [UInt8] {
        var fields: [(String, String)] = [
            ("MESSAGE", message(record)),
            ("PRIORITY", String(priority(record))),
            ("SYSLOG_IDENTIFIER", "fencegate"),
        ]
        for (name, value) in record.exportedFields() {
            let text: String
            switch value {
            case .null: continue
            case .integer(let number): text = String(number)
            case .seconds(let seconds): text = String(seconds)
            case .time(let date): text = RFC3339.format(date)
            case .text(let string): text = string
            }
            fields.append(("FENCEGATE_" + name.uppercased(), text))
        }
        var bytes: [UInt8] = []
        for (key, value) in fields {
            let utf8 = Array(value.utf8)
            bytes += Array(key.utf8)
            if utf8.contains(UInt8(ascii: "\n")) {
                bytes.append(UInt8(ascii: "\n"))
                bytes += (0..<8).map { UInt8(truncatingIfNeeded: UInt64(utf8.count) >> (8 * $0)) }
            } else {
                bytes.append(UInt8(ascii: "="))
            }
            bytes += utf8
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    /// "off pcmk1 (requested by root over http): success, operation 42".
    static func message(_ record: AuditRecord) -> String {
        let requester = record.requester.map { " by \($0)" } ?? ""
        let outcome = record.result?.rawValue ?? record.state.rawValue
        let detail = record.message.map { " (\($0))" } ?? ""
        return "\(record.action) \(record.domainName ?? record.target) (requested\(requester) over \(record.source)): "
            + "\(outcome)\(detail), operation \(record.id)"
    }

    /// syslog's levels: 5 (notice) for a success, 4 (warning) for a refusal, 3 (error) for anything else.
    static func priority(_ record: AuditRecord) -> Int {
        switch record.result {
        case .success: 5
        case .refused: 4
        default: 3
        }
    }
}
