import FoundationEssentials

/// A JSON value of the bench's reports (read by bench/bench.py), written with sorted keys.
enum BenchJSON: Encodable {
    case number(Double)
    case integer(Int)
    case numbers([Double])
    case object([String: BenchJSON])

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .numbers(let values): try container.encode(values)
        case .object(let fields): try container.encode(fields)
        }
    }

    /// The JSON text, keys sorted (pretty-printed when asked).
    func text(pretty: Bool = false) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
