import FenceCore
import FoundationEssentials
import Glibc
import Logging

/// A swift-log handler that writes one JSON object per line to standard error, for journald, Loki or ELK:
/// `timestamp` (RFC 3339, UTC, milliseconds, as the audit output prints them), `level`, `label`, `message`, `source`, then the metadata
/// as string fields (e.g. `audit.id`, `fence.action`). Values are escaped as in the text format (control,
/// line-separator and bidirectional characters written as `\n`, `\u{1B}`…), so both formats show a hostile
/// value the same way and no reader of the line can be steered by it.
struct JSONLogHandler: EscapingLogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    /// Keys sorted, slashes as they are (paths and URIs stay readable).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    func log(event: LogEvent) {
        var fields = Dictionary(escapedFields(of: event), uniquingKeysWith: { $1 })
        fields["timestamp"] = RFC3339.format(Date())
        fields["level"] = event.level.rawValue
        fields["label"] = label
        fields["message"] = event.message.description.escapingControlCharacters
        fields["source"] = event.source.escapingControlCharacters
        guard
            let data = try? Self.encoder.encode(fields)
        else { return }
        writeLine(String(decoding: data, as: UTF8.self) + "\n")
    }
}
