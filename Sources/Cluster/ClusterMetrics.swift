import CoreMetrics
import FenceCore
import Metrics

/// The cluster's gauges in the service's metrics: members by standing, and whether this host's partition is
/// quorate.
struct ClusterMetrics: Sendable {
    static let members = MetricFamily(
        name: "fencegate_cluster_members",
        help:
            "Members of the Fencegate cluster as this host sees them, by standing (local, pending, accepted, refused)."
    )
    static let quorate = MetricFamily(
        name: "fencegate_cluster_quorate",
        help:
            "1 if this host's partition of the cluster is quorate (corosync's votequorum), else 0 (also while unknown)."
    )
    static let forwarded = MetricFamily(
        name: "fencegate_cluster_forwarded_total",
        help:
            "Requests this host received and sent to the cluster, by outcome: here (placed on this host), or the answer of the host it was placed on (success, failure, timed_out; failure also when it could not be placed)."
    )
    static let forwardedLatency = MetricFamily(
        name: "fencegate_cluster_forwarded_duration_seconds",
        help:
            "Time from sending a request to the cluster to its placement on this host, or to the answer of the host it was placed on.",
        buckets: [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
            .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
    )
    static let executed = MetricFamily(
        name: "fencegate_cluster_executed_total",
        help: "Requests other hosts received that this host executed for them, by result."
    )
    static let standings = ["local", "pending", "accepted", "refused"]

    private let factory: DescribedMetricsFactory

    init(metrics: FenceMetrics) {
        factory = metrics.factory.describing([
            Self.members, Self.quorate, Self.forwarded, Self.forwardedLatency, Self.executed,
        ])
    }

    /// Counts a request sent to the cluster, and how long its placement or answer took.
    func forwarded(result: String, duration: Duration) {
        Counter(label: Self.forwarded.name, dimensions: [("result", result)], factory: factory).increment()
        Timer(label: Self.forwardedLatency.name, factory: factory).record(duration: duration)
    }

    /// Counts a request executed here for another host.
    func executed(result: String) {
        Counter(label: Self.executed.name, dimensions: [("result", result)], factory: factory).increment()
    }

    /// Records `view`: every standing's count (0 included), and the quorum once known.
    func record(_ view: ClusterMembership.View) {
        var counts = Dictionary(uniqueKeysWithValues: Self.standings.map { ($0, 0) })
        if view.local != nil { counts["local", default: 0] += 1 }
        for standing in view.members.values {
            switch standing {
            case .pending: counts["pending", default: 0] += 1
            case .accepted: counts["accepted", default: 0] += 1
            case .refused: counts["refused", default: 0] += 1
            }
        }
        for (standing, count) in counts {
            Gauge(label: Self.members.name, dimensions: [("standing", standing)], factory: factory).record(count)
        }
        Gauge(label: Self.quorate.name, factory: factory).record(view.quorate == true ? 1 : 0)
    }
}
