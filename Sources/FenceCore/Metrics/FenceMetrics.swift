import Metrics

/// Counters, gauges and the latency histogram of fence operations, recorded through swift-metrics into a
/// Prometheus registry of this service's own (see `DescribedMetricsFactory`).
///
/// Front ends record their own metrics through `factory` and present `exposition()` (the HTTP API at
/// `GET /metrics`). The names and labels are documented in README.md and openapi.yaml.
public final class FenceMetrics: Sendable {
    /// The families of fence operations, named as README.md and openapi.yaml document them.
    private enum Family: String, CaseIterable {
        case operations = "fencegate_operations_total"
        case latency = "fencegate_operation_duration_seconds"
        case inFlight = "fencegate_operations_in_flight"
        case hypervisorUp = "fencegate_hypervisor_up"
        case auditLogWritable = "fencegate_audit_log_writable"
        case refusalsUnrecorded = "fencegate_audit_refusals_unrecorded_total"
        case sessionsRefused = "fencegate_gateway_sessions_refused_total"
        case replaysDropped = "fencegate_gateway_replays_dropped_total"
        case connectionsRefused = "fencegate_http_connections_refused_total"
        case auditRowsDeleted = "fencegate_audit_rows_deleted_total"
        case auditReserveInUse = "fencegate_audit_reserve_in_use"
        case auditRowsSpared = "fencegate_audit_rows_spared_total"

        var help: String {
            switch self {
            case .operations: "Fence operations finished, by action, result and front end."
            case .latency: "Time from request to result of fence operations."
            case .inFlight: "Fence operations running now."
            case .hypervisorUp: "1 if the hypervisor was reachable at the last check, else 0."
            case .auditLogWritable:
                "1 if the audit log could be written at the last check (health check, scrape, fence), else 0."
            case .refusalsUnrecorded:
                "Refused requests counted in a summary row instead of a row of their own (the audit rate limit)."
            case .sessionsRefused:
                "fence_xvm call backs and fence_virt connections turned away at their limits, by listener."
            case .replaysDropped:
                "Signed fence_xvm requests dropped as exact copies of one received before (replayed packets)."
            case .connectionsRefused:
                "HTTP connections closed at once because only the connections kept for clients with credentials were left."
            case .auditRowsDeleted:
                "Audit rows deleted because they were older than the retention allows."
            case .auditReserveInUse:
                "1 if the audit log's filesystem is nearly full and fences use the space kept for them, else 0 (checked at each scrape)."
            case .auditRowsSpared:
                "Rows of reads and of refusals without valid credentials left unwritten while fences used the space kept for them, by kind."
            }
        }

        /// Upper bounds of the latency histogram's buckets (`+Inf` is implied).
        var buckets: [Duration] {
            guard self == .latency else { return [] }
            return [
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
                .seconds(20), .seconds(30), .seconds(60),
            ]
        }
    }

    /// Makes metrics in this service's registry; a front end adds its own families with `describing(_:)`.
    public let factory: DescribedMetricsFactory
    private let inFlight: Meter
    private let hypervisorUp: Gauge
    private let auditLogWritable: Gauge
    private let refusalsUnrecorded: Counter
    private let replaysDropped: Counter
    private let connectionsRefused: Counter
    private let auditRowsDeleted: Counter
    private let auditReserveInUse: Gauge

    init() {
        let factory = DescribedMetricsFactory(
            families: Family.allCases.map { MetricFamily(name: $0.rawValue, help: $0.help, buckets: $0.buckets) }
        )
        self.factory = factory
        // Unlabeled metrics are shown from the start; labeled ones with their first sample.
        inFlight = Meter(label: Family.inFlight.rawValue, factory: factory)
        hypervisorUp = Gauge(label: Family.hypervisorUp.rawValue, factory: factory)
        auditLogWritable = Gauge(label: Family.auditLogWritable.rawValue, factory: factory)
        refusalsUnrecorded = Counter(label: Family.refusalsUnrecorded.rawValue, factory: factory)
        replaysDropped = Counter(label: Family.replaysDropped.rawValue, factory: factory)
        connectionsRefused = Counter(label: Family.connectionsRefused.rawValue, factory: factory)
        auditRowsDeleted = Counter(label: Family.auditRowsDeleted.rawValue, factory: factory)
        auditReserveInUse = Gauge(label: Family.auditReserveInUse.rawValue, factory: factory)
    }

    /// Every metric, front ends' included, in the Prometheus text exposition format (version 0.0.4).
    public func exposition() -> [UInt8] { factory.exposition() }

    func operationStarted() {
        inFlight.increment()
    }

    func operationFinished(action: String, result: String, source: String, duration: Duration) {
        inFlight.decrement()
        operationCounted(action: action, result: result, source: source)
        let latency = Timer(label: Family.latency.rawValue, dimensions: [("action", action)], factory: factory)
        latency.record(duration: duration)
    }

    /// Counts an operation that was refused or failed before it could start (it was never in flight).
    func operationRejected(action: String, result: String, source: String) {
        operationCounted(action: action, result: result, source: source)
    }

    func refusalUnrecorded() {
        refusalsUnrecorded.increment()
    }

    /// Counts a connection or call back that `listener` turned away at one of its limits.
    public func sessionTurnedAway(listener: String) {
        Counter(label: Family.sessionsRefused.rawValue, dimensions: [("listener", listener)], factory: factory)
            .increment()
    }

    /// Counts a signed multicast request dropped as an exact copy of one received before.
    public func replayDropped() {
        replaysDropped.increment()
    }

    /// Counts an HTTP connection closed at once because only the connections kept for clients with
    /// credentials were left, and its client had presented none lately.
    @Sendable public func connectionRefusedWithoutCredentials() {
        connectionsRefused.increment()
    }

    func auditRowsDeleted(_ count: Int) {
        auditRowsDeleted.increment(by: count)
    }

    func hypervisor(up: Bool) {
        hypervisorUp.record(up ? 1 : 0)
    }

    func auditReserve(inUse: Bool) {
        auditReserveInUse.record(inUse ? 1 : 0)
    }

    /// Counts a row of `kind` (read, refusal, summary) left unwritten while fences use the space kept for them.
    func auditRowSpared(kind: String) {
        Counter(label: Family.auditRowsSpared.rawValue, dimensions: [("kind", kind)], factory: factory).increment()
    }

    func auditLog(writable: Bool) {
        auditLogWritable.record(writable ? 1 : 0)
    }

    private func operationCounted(action: String, result: String, source: String) {
        Counter(
            label: Family.operations.rawValue,
            dimensions: [("action", action), ("result", result), ("source", source)],
            factory: factory
        ).increment()
    }
}
