import FoundationEssentials
public import Store

/// Audit records as CSV (RFC 4180) for spreadsheets and SIEMs: a header row with the field names of the HTTP
/// API's `Operation` object, then one record per operation, each line ended by CRLF.
///
/// - A field holding a comma, a double quote, CR, LF or any other control character is enclosed in double
///   quotes, with each double quote doubled; its characters are kept as they are.
/// - An unknown value (JSON `null`) is an empty field; times are RFC 3339; durations are seconds, written as
///   in the JSON.
/// - Formula injection (OWASP "CSV Injection"): a text field beginning with `=`, `+`, `-`, `@`, a tab or CR
///   would be run as a formula by a spreadsheet, so it gets a leading `'` (apostrophe), which spreadsheets
///   show as text. Numbers and times are never prefixed (they are produced here, never taken from a request).
public enum OperationCSV {
    /// The header row (with `host` last, for cluster mode's merged log), CRLF-terminated.
    public static func header(withHost: Bool) -> String {
        let names = AuditRecord.exportedFieldNames + (withHost ? ["host"] : [])
        return names.joined(separator: ",") + "\r\n"
    }

    /// One record, CRLF-terminated.
    public static func row(_ record: AuditRecord, host: String? = nil) -> String {
        record.exportedFields(host: host).map { field($0.value) }.joined(separator: ",") + "\r\n"
    }

    /// One field, neutralized and quoted as needed.
    static func field(_ value: OperationField) -> String {
        switch value {
        case .integer(let number): return String(number)
        case .seconds(let seconds): return String(seconds)
        case .time(let date): return RFC3339.format(date)
        case .null: return ""
        case .text(let text): return quoted(neutralized(text))
        }
    }

    /// The characters that make a spreadsheet read a cell as a formula when they begin it.
    private static let formulaStarts: Set<Unicode.Scalar> = ["=", "+", "-", "@", "\t", "\r"]

    static func neutralized(_ text: String) -> String {
        guard let first = text.unicodeScalars.first, formulaStarts.contains(first) else { return text }
        return "'" + text
    }

    static func quoted(_ text: String) -> String {
        let needsQuotes = text.unicodeScalars.contains { scalar in
            scalar == "," || scalar == "\"" || scalar.value < 0x20 || scalar.value == 0x7F
        }
        guard needsQuotes else { return text }
        // Doubled scalar by scalar: a `"` followed by a combining mark is one Character, yet still a quote.
        var quoted = "\""
        for scalar in text.unicodeScalars {
            if scalar == "\"" { quoted.unicodeScalars.append("\"") }
            quoted.unicodeScalars.append(scalar)
        }
        return quoted + "\""
    }
}
