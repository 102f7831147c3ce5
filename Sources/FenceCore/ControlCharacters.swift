extension Unicode.Scalar {
    /// True for characters that control a terminal or a log's line structure rather than show: C0 and C1
    /// controls and DEL (category Cc), the line and paragraph separators, and the bidirectional formatting
    /// characters that reorder what a reader sees.
    public var isControlForDisplay: Bool {
        switch value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x2028, 0x2029: return true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}

extension String {
    /// True if the text holds a C0 or C1 control character or DEL (category Cc).
    public var containsControlCharacters: Bool {
        unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }

    /// The text with every character that could forge a log line or steer a terminal written as an escape
    /// (`\n`, `\r`, `\t`, `\u{1B}`…) and backslashes doubled, so that one value always reads as one value.
    /// Text without such characters comes back unchanged.
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: { $0.isControlForDisplay || $0 == "\\" }) else { return self }
        var escaped = ""
        escaped.unicodeScalars.reserveCapacity(unicodeScalars.count + 8)
        for scalar in unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.isControlForDisplay:
                escaped += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}
