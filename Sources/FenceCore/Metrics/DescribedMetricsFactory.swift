public import CoreMetrics
import Locking
import Prometheus

/// A swift-metrics factory over one Prometheus registry that registers every metric with its family's help
/// text and buckets; swift-prometheus's own `PrometheusMetricsFactory` registers them with no help.
///
/// Made per `FenceService` (see `FenceMetrics`), never bootstrapped as the process's `MetricsSystem`: services
/// in one process keep their counts apart. Makes counters, meters and gauges (Prometheus gauges) and timers
/// (Prometheus histograms); aggregating recorders are not supported (debug builds trap, release builds make a
/// gauge).
///
/// A metric made again (the same kind, label and dimensions) is the handler made the first time, found in a
/// table shared by every factory over the registry: callers may make their metrics per event, as swift-metrics
/// invites, without asking the registry (which checks names and copies help texts) each time.
public struct DescribedMetricsFactory: MetricsFactory {
    private let registry: PrometheusCollectorRegistry
    private let families: [String: MetricFamily]
    private let made: MadeHandlers

    /// A factory over a new, empty registry.
    init(families: [MetricFamily]) {
        self = DescribedMetricsFactory(registry: PrometheusCollectorRegistry(), families: [:], made: MadeHandlers())
            .describing(families)
    }

    private init(registry: PrometheusCollectorRegistry, families: [String: MetricFamily], made: MadeHandlers) {
        self.registry = registry
        self.families = families
        self.made = made
    }

    /// A factory over the same registry that also knows `more` families (a front end's own metrics).
    public func describing(_ more: [MetricFamily]) -> DescribedMetricsFactory {
        DescribedMetricsFactory(
            registry: registry,
            families: families.merging(more.map { ($0.name, $0) }) { _, new in new },
            made: made
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
        counter(label, dimensions)
    }

    public func makeFloatingPointCounter(
        label: String,
        dimensions: [(String, String)]
    ) -> any FloatingPointCounterHandler {
        counter(label, dimensions)
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        gauge(label, dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        assert(!aggregate, "metric '\(label)': aggregating recorders are not described; use a Timer")
        return gauge(label, dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        made.handler(.timer, label, dimensions) {
            registry.makeDurationHistogram(
                descriptor: descriptor(label),
                labels: dimensions,
                buckets: families[label]?.buckets ?? []
            )
        }
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Prometheus.Counter {
        made.handler(.counter, label, dimensions) {
            registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
        }
    }

    private func gauge(_ label: String, _ dimensions: [(String, String)]) -> Prometheus.Gauge {
        made.handler(.gauge, label, dimensions) {
            registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
        }
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { forget(counter) { registry.unregisterCounter($0) } }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { forget(counter) { registry.unregisterCounter($0) } }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { forget(gauge) { registry.unregisterGauge($0) } }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { forget(gauge) { registry.unregisterGauge($0) } }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram {
            forget(histogram) { registry.unregisterDurationHistogram($0) }
        }
    }

    private func forget<Handler: AnyObject & Sendable>(_ handler: Handler, unregister: (Handler) -> Void) {
        made.remove(handler)
        unregister(handler)
    }
}

/// The handlers a registry's factories made, by kind, label and dimensions.
private final class MadeHandlers: Sendable {
    enum Kind: Hashable { case counter, gauge, timer }

    struct Key: Hashable {
        let kind: Kind
        let label: String
        let dimensions: [String]

        init(_ kind: Kind, _ label: String, _ dimensions: [(String, String)]) {
            self.kind = kind
            self.label = label
            self.dimensions = dimensions.flatMap { [$0.0, $0.1] }
        }
    }

    private let handlers = Locked<[Key: any AnyObject & Sendable]>([:])

    /// The handler made for `kind`, `label` and `dimensions`, made by `make` if there is none yet.
    func handler<Handler: AnyObject & Sendable>(
        _ kind: Kind,
        _ label: String,
        _ dimensions: [(String, String)],
        make: () -> Handler
    ) -> Handler {
        let key = Key(kind, label, dimensions)
        return handlers.withLock { handlers in
            if let found = handlers[key] as? Handler { return found }
            let made = make()
            handlers[key] = made
            return made
        }
    }

    func remove(_ handler: some AnyObject) {
        handlers.withLock { handlers in
            if let key = handlers.first(where: { $0.value === handler })?.key { handlers[key] = nil }
        }
    }
}
