import Foundation

/// A domain as a requester names it: a name, or a UUID.
///
/// As in fence_virtd, text that is a canonical UUID (it parses, and formats back to the same text ignoring
/// case) is looked up by UUID; anything else is a name.
public struct DomainTarget: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
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

    public var description: String { text }
}
