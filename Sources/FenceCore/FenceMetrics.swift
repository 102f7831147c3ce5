import Synchronization

/// Counters and a latency histogram of fence operations, kept in memory by `FenceService`.
///
/// Front ends read a `Snapshot` and present it (the HTTP API as Prometheus text).
public final class FenceMetrics: Sendable {
    /// Upper bounds of the latency histogram's buckets, in seconds (`+Inf` is implied).
    public static let bucketBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60]

    /// Operations counted by action, result and front end.
    public struct OperationKey: Hashable, Sendable {
        public var action: String
        public var result: String
        public var source: String
    }

    /// One action's latency histogram: cumulative counts per bucket bound, total count and sum.
    public struct Histogram: Sendable, Equatable {
        public var bucketCounts: [UInt64] = Array(repeating: 0, count: FenceMetrics.bucketBounds.count)
        public var count: UInt64 = 0
        public var sum: Double = 0
    }

    /// A consistent copy of every metric.
    public struct Snapshot: Sendable {
        public var operations: [OperationKey: UInt64]
        public var latency: [String: Histogram]
        public var inFlight: Int
        /// Nil until the hypervisor was first checked.
        public var hypervisorUp: Bool?
        /// Refusals counted in a summary row instead of a row of their own (the audit rate limit).
        public var refusalsUnrecorded: UInt64 = 0
        /// Connections and call backs a front end turned away at its limits, by listener.
        public var sessionsTurnedAway: [String: UInt64] = [:]
    }

    private let state = Mutex(Snapshot(operations: [:], latency: [:], inFlight: 0, hypervisorUp: nil))

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    func operationStarted() {
        state.withLock { $0.inFlight += 1 }
    }

    func operationFinished(action: String, result: String, source: String, seconds: Double) {
        state.withLock { state in
            state.inFlight -= 1
            state.operations[OperationKey(action: action, result: result, source: source), default: 0] += 1
            var histogram = state.latency[action] ?? Histogram()
            for (index, bound) in Self.bucketBounds.enumerated() where seconds <= bound {
                histogram.bucketCounts[index] += 1
            }
            histogram.count += 1
            histogram.sum += seconds
            state.latency[action] = histogram
        }
    }

    /// Counts an operation that was refused or failed before it could start (it was never in flight).
    func operationRejected(action: String, result: String, source: String) {
        state.withLock { $0.operations[OperationKey(action: action, result: result, source: source), default: 0] += 1 }
    }

    func refusalUnrecorded() {
        state.withLock { $0.refusalsUnrecorded += 1 }
    }

    /// Counts a connection or call back that `listener` turned away at one of its limits.
    public func sessionTurnedAway(listener: String) {
        state.withLock { $0.sessionsTurnedAway[listener, default: 0] += 1 }
    }

    func hypervisor(up: Bool) {
        state.withLock { $0.hypervisorUp = up }
    }
}
