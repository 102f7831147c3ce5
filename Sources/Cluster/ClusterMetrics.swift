import CoreMetrics
import FenceCore

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
    static let standings = ["local", "pending", "accepted", "refused"]

    private let factory: DescribedMetricsFactory

    init(metrics: FenceMetrics) {
        factory = metrics.factory.describing([Self.members, Self.quorate])
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
