import CoreMetrics
import FenceCore

/// Counts the responses the HTTP API sends, by status code, in the service's metrics.
struct ResponseCounter: Sendable {
    static let family = MetricFamily(
        name: "fencegate_http_responses_total",
        help: "HTTP responses sent, by status code."
    )

    private let factory: DescribedMetricsFactory

    init(metrics: FenceMetrics) {
        factory = metrics.factory.describing([Self.family])
    }

    func count(_ status: Int) {
        Counter(label: Self.family.name, dimensions: [("code", String(status))], factory: factory).increment()
    }
}
