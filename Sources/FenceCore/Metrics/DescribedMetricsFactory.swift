public import CoreMetrics
import Prometheus

/// A swift-metrics factory over one Prometheus registry that registers every metric with its family's help
/// text and buckets; swift-prometheus's own `PrometheusMetricsFactory` registers them with no help.
///
/// Made per `FenceService` (see `FenceMetrics`), never bootstrapped as the process's `MetricsSystem`: services
/// in one process keep their counts apart. Makes counters, meters and gauges (Prometheus gauges) and timers
/// (Prometheus histograms); aggregating recorders are not supported (debug builds trap, release builds make a
/// gauge).
public struct DescribedMetricsFactory: MetricsFactory {
    private let registry: PrometheusCollectorRegistry
    private let families: [String: MetricFamily]

    /// A factory over a new, empty registry.
    init(families: [MetricFamily]) {
        self = DescribedMetricsFactory(registry: PrometheusCollectorRegistry(), families: [:]).describing(families)
    }

    private init(registry: PrometheusCollectorRegistry, families: [String: MetricFamily]) {
        self.registry = registry
        self.families = families
    }

    /// A factory over the same registry that also knows `more` families (a front end's own metrics).
    public func describing(_ more: [MetricFamily]) -> DescribedMetricsFactory {
        DescribedMetricsFactory(
            registry: registry,
            families: families.merging(more.map { ($0.name, $0) }) { _, new in new }
        )
    }

    /// Every metric made so far, in the Prometheus text exposition format (version 0.0.4). A labeled family
    /// appears with its first sample.
    func exposition() -> [UInt8] { registry.emitToBuffer() }

    /// The registry's name and help for `label`. Every label must be described: an undescribed one is a
    /// programmer error, caught in debug builds; release builds register it without help.
    private func descriptor(_ label: String) -> MetricNameDescriptor {
        let family = families[label]
        assert(family != nil, "metric '\(label)' has no MetricFamily: describe it before making it")
        return MetricNameDescriptor(metricName: label, unitName: "", helpText: family?.help ?? "")
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeFloatingPointCounter(
        label: String,
        dimensions: [(String, String)]
    ) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        assert(!aggregate, "metric '\(label)': aggregating recorders are not described; use a Timer")
        return registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(
            descriptor: descriptor(label),
            labels: dimensions,
            buckets: families[label]?.buckets ?? []
        )
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
    }
}
