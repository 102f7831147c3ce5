import FenceCore
import FoundationEssentials
import Glibc
import Logging

/// A swift-log handler that writes readable lines to standard error, as swift-log's `StreamLogHandler`
/// does (`TIME LEVEL LABEL: key=value … [SOURCE] MESSAGE`), except that every value is escaped: a request
/// can put a newline or a terminal escape into a domain name or a header, and one log line must stay one
/// line that says what happened (`\n`, `\u{1B}`…; see `String.escapingControlCharacters`). A value with a
/// space, `=`, a quote or a bracket in it is quoted (`fence.target="a b=c"`), so that it cannot pass for
/// other fields.
struct TextLogHandler: EscapingLogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    func log(event: LogEvent) {
        var line = "\(Self.timestamp()) \(event.level) \(label):"
        for (key, value) in escapedFields(of: event) { line += " \(key)=\(Self.quotedIfNeeded(value))" }
        line += " [\(event.source.escapingControlCharacters)] \(event.message.description.escapingControlCharacters)\n"
        writeLine(line)
    }

    /// `value` as is, or in double quotes (with `"` escaped) if it holds what separates or brackets fields.
    /// Scalar by scalar: a `"` or a space followed by a combining mark is one Character, yet still separates.
    static func quotedIfNeeded(_ value: String) -> String {
        guard value.isEmpty || value.unicodeScalars.contains(where: { " =\"[]".unicodeScalars.contains($0) }) else {
            return value
        }
        var quoted = "\""
        for scalar in value.unicodeScalars {
            if scalar == "\"" { quoted.unicodeScalars.append("\\") }
            quoted.unicodeScalars.append(scalar)
        }
        return quoted + "\""
    }

    /// Local time with its offset, as `StreamLogHandler` prints it: `2026-11-29T10:00:00+0000`.
    private static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        guard localtime_r(&now, &parts) != nil else { return "-" }
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Writes one whole line to standard error in one `write(2)`, so lines from several threads never interleave.
func writeLine(_ line: String) {
    write(line, to: STDERR_FILENO)
}

/// Writes `text` to `descriptor` unbuffered (in one `write(2)` unless the kernel takes less), retrying after a
/// signal; an error drops the rest (there is nowhere left to report it).
func write(_ text: String, to descriptor: Int32) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes {
            Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset)
        }
        if written < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += written
    }
}
