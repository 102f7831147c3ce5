import Foundation
import Logging

/// A swift-log handler that writes one JSON object per line to standard error, for journald, Loki or ELK:
/// `timestamp` (RFC 3339, UTC, milliseconds, as the audit output prints them), `level`, `label`, `message`, `source`, then the metadata
/// as string fields (e.g. `audit.id`, `fence.action`).
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    /// One write per line, so that lines from several threads never interleave.
    private static let output = FileHandle.standardError

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { fields[key] = "\(value)" }
        if let error = event.error { fields["error"] = "\(error)" }
        fields["timestamp"] = formatTimestamp(Date())
        fields["level"] = event.level.rawValue
        fields["label"] = label
        fields["message"] = event.message.description
        fields["source"] = event.source
        guard var data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        data.append(UInt8(ascii: "\n"))
        Self.output.write(data)
    }
}
