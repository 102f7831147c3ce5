import FenceCore
import TestSupport
import Testing

/// Metrics go through swift-metrics into a Prometheus registry of each service's own.
@Suite("Metrics: one registry per service")
struct MetricsTests {
    @Test("two services in one process count apart, with the documented names, labels and help")
    func servicesCountApart() async throws {
        let (first, second) = (try await ServiceHarness(), try await ServiceHarness())
        let (operation, gate) = try await first.offHungInDestroy("pcmk1")
        #expect(exposition(first).contains("fencegate_operations_in_flight 1.0\n"))
        gate.open()
        _ = try await operation.value
        first.service.metrics.sessionTurnedAway(listener: "tcp")
        first.service.metrics.replayDropped()
        first.service.metrics.replayDropped()

        let text = exposition(first)
        #expect(text.contains(#"fencegate_operations_total{action="off",result="success",source="cli"} 1"#))
        #expect(text.contains(#"fencegate_operation_duration_seconds_bucket{action="off",le="60.0"} 1"#))
        #expect(text.contains("fencegate_operations_in_flight 0.0\n"))
        #expect(text.contains(#"fencegate_gateway_sessions_refused_total{listener="tcp"} 1"#))
        #expect(text.contains("# HELP fencegate_gateway_sessions_refused_total fence_xvm call backs and fence_virt"))
        #expect(text.contains("# HELP fencegate_hypervisor_up 1 if the hypervisor was reachable"))
        #expect(text.contains("fencegate_gateway_replays_dropped_total 2\n"))

        let other = exposition(second)
        #expect(!other.contains("fencegate_operations_total{"))
        #expect(!other.contains("fencegate_gateway_sessions_refused_total{"))
        #expect(other.contains("fencegate_operations_in_flight 0.0\n"))
        #expect(other.contains("fencegate_gateway_replays_dropped_total 0\n"))
    }

    @Test("a metric made again is the one made first, and keeps counting; other labels are other series")
    func madeAgainIsTheSame() async throws {
        let harness = try await ServiceHarness()
        let metrics = harness.service.metrics
        let factory = metrics.factory.describing([])  // another factory over the same registry
        let first = metrics.factory.makeCounter(
            label: "fencegate_gateway_sessions_refused_total",
            dimensions: [("listener", "tcp")]
        )
        let again = factory.makeCounter(
            label: "fencegate_gateway_sessions_refused_total",
            dimensions: [("listener", "tcp")]
        )
        let other = factory.makeCounter(
            label: "fencegate_gateway_sessions_refused_total",
            dimensions: [("listener", "udp")]
        )
        #expect(first as AnyObject === again as AnyObject)
        #expect(first as AnyObject !== other as AnyObject)
        metrics.sessionTurnedAway(listener: "tcp")
        metrics.sessionTurnedAway(listener: "tcp")
        metrics.sessionTurnedAway(listener: "udp")
        let text = exposition(harness)
        #expect(text.contains(#"fencegate_gateway_sessions_refused_total{listener="tcp"} 2"#))
        #expect(text.contains(#"fencegate_gateway_sessions_refused_total{listener="udp"} 1"#))
    }

    private func exposition(_ harness: ServiceHarness) -> String {
        String(decoding: harness.service.metrics.exposition(), as: UTF8.self)
    }
}
