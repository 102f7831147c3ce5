/// A route's path below its mount: literal segments and named parameters, as in `/domains/{domain}/off`;
/// `/` alone is the mount's own path. Patterns are written in code, so a malformed one is a programmer error
/// and traps.
struct RoutePattern: Sendable, Equatable, CustomStringConvertible {
    enum Segment: Sendable, Equatable {
        /// Matches a decoded segment equal to it.
        case literal(String)
        /// Matches any decoded segment, kept under this name.
        case parameter(String)
    }

    let segments: [Segment]
    let description: String

    init(_ text: String) {
        precondition(text.hasPrefix("/"), "a route pattern starts with '/': \(text)")
        description = text
        guard text != "/" else {
            segments = []
            return
        }
        segments = text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map { part in
            precondition(!part.isEmpty && part != "." && part != "..", "a route pattern names segments: \(text)")
            if part.first == "{" && part.last == "}" && part.count > 2 {
                return .parameter(String(part.dropFirst().dropLast()))
            }
            precondition(!part.contains("{") && !part.contains("}"), "a parameter is a whole segment: \(text)")
            return .literal(String(part))
        }
    }

    /// The parameters by name, if the decoded `path` segments have this pattern's shape; nil otherwise.
    func match(_ path: ArraySlice<String>) -> [String: String]? {
        guard path.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (segment, value) in zip(segments, path) {
            switch segment {
            case .literal(let literal):
                guard value == literal else { return nil }
            case .parameter(let name):
                parameters[name] = value
            }
        }
        return parameters
    }
}
