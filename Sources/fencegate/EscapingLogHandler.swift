import FenceCore
import Logging

/// What Fencegate's two log formats share: the handler's state, and the rule that every value from a log
/// event is escaped (`String.escapingControlCharacters`), so a name or path from a request stays one value
/// on one line.
protocol EscapingLogHandler: LogHandler {
    var metadata: Logger.Metadata { get set }
}

extension EscapingLogHandler {
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The handler's and the event's metadata (the event's win) and its error, escaped, sorted by key.
    func escapedFields(of event: LogEvent) -> [(key: String, value: String)] {
        var fields = metadata.merging(event.metadata ?? [:]) { $1 }
        if let error = event.error { fields["error"] = "\(error)" }
        return fields.map { (key: $0.key.escapingControlCharacters, value: "\($0.value)".escapingControlCharacters) }
            .sorted { $0.key < $1.key }
    }
}
