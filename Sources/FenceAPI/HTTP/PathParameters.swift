/// The named parameters of the route a request matched, each the percent-decoded segment.
struct PathParameters: Sendable {
    private let values: [String: String]

    init(_ values: [String: String]) {
        self.values = values
    }

    /// The parameter `name`. Throws if the route's pattern has no such parameter: a programmer error, answered
    /// as an internal error and logged.
    func require(_ name: String) throws -> String {
        guard let value = values[name] else { throw UndeclaredPathParameter(name: name) }
        return value
    }

    /// The parameter `name` as a `Value`. A segment that names no value throws `InvalidPathParameter`, which
    /// each mount answers its own way (the REST API: 400; Redfish: 404, no such resource).
    func require<Value: PathParameterValue>(_ name: String, as type: Value.Type) throws -> Value {
        try Value(pathParameter: try require(name))
    }
}

/// A value a path parameter can name, read from its decoded segment.
protocol PathParameterValue {
    /// Throws `InvalidPathParameter`, saying why, when `text` names no value.
    init(pathParameter text: String) throws(InvalidPathParameter)
}

/// A path parameter that names no value of its type, e.g. a domain name longer than `DomainTarget.maximumBytes`.
struct InvalidPathParameter: Error {
    /// Why, in words a client can act on.
    let reason: String
}

/// A handler asked for a parameter its route's pattern does not declare.
struct UndeclaredPathParameter: Error, CustomStringConvertible {
    let name: String

    var description: String { "the route has no path parameter '\(name)'" }
}
