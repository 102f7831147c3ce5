import Foundation

/// Thrown by `waitUntil` when the condition never became true.
public struct ConditionNeverMet: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) {
        self.description = description
    }
}

/// Waits for an event: polls `condition` every `interval` (10 ms) until it is true, failing after `limit`.
///
/// The limit is a safety net against a hung test, not a performance assertion: it is set far above
/// how long the event normally takes.
public func waitUntil(
    _ what: String,
    limit: Duration = .seconds(20),
    every interval: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while try await !condition() {
        guard clock.now < deadline else { throw ConditionNeverMet(description: "never happened: \(what)") }
        try await Task.sleep(for: interval)
    }
}
