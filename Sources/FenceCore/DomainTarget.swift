import FoundationEssentials

/// A domain as a requester names it: a name, or a UUID.
///
/// As in fence_virtd, text that is a canonical UUID (it parses, and formats back to the same text ignoring
/// case) is looked up by UUID; anything else is a name, looked up by libvirt byte for byte.
public struct DomainTarget: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The longest target accepted, in UTF-8 bytes. Names are short in practice; the limit bounds what a
    /// request can make the audit log and the logs hold.
    public static let maximumBytes = 256

    /// The text as given.
    public let text: String

    public init(_ text: String) {
        self.text = text
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    /// The lower-case canonical UUID if `text` is one, else nil.
    public var uuid: String? {
        guard let parsed = UUID(uuidString: text), parsed.uuidString.lowercased() == text.lowercased() else {
            return nil
        }
        return text.lowercased()
    }

    /// Why this target cannot name a domain (empty, longer than `maximumBytes` in UTF-8, or holding a
    /// control character), or nil if it can.
    public var problem: String? {
        if text.isEmpty { return "a domain name or UUID cannot be empty" }
        if text.utf8.count > Self.maximumBytes {
            return
                "a domain name or UUID has at most \(Self.maximumBytes) bytes in UTF-8 (this one has \(text.utf8.count))"
        }
        if text.containsControlCharacters { return "a domain name or UUID cannot contain control characters" }
        return nil
    }

    public var description: String { text }

    /// The text as the audit log keeps it: control characters escaped (`\n`, `\u{1B}`…), and cut after
    /// `maximumBytes` bytes with the number of bytes left out, so no request can make a row large.
    public var auditText: String {
        let escaped = text.escapingControlCharacters
        guard escaped.utf8.count > Self.maximumBytes else { return escaped }
        var kept = ""
        for scalar in escaped.unicodeScalars {
            guard kept.utf8.count + String(scalar).utf8.count <= Self.maximumBytes else { break }
            kept.unicodeScalars.append(scalar)
        }
        return kept + "…(\(escaped.utf8.count - kept.utf8.count) more bytes)"
    }
}
