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

        let text = exposition(first)
        #expect(text.contains(#"fencegate_operations_total{action="off",result="success",source="cli"} 1"#))
        #expect(text.contains(#"fencegate_operation_duration_seconds_bucket{action="off",le="60.0"} 1"#))
        #expect(text.contains("fencegate_operations_in_flight 0.0\n"))
        #expect(text.contains(#"fencegate_gateway_sessions_refused_total{listener="tcp"} 1"#))
        #expect(text.contains("# HELP fencegate_gateway_sessions_refused_total fence_xvm call backs and fence_virt"))
        #expect(text.contains("# HELP fencegate_hypervisor_up 1 if the hypervisor was reachable"))

        let other = exposition(second)
        #expect(!other.contains("fencegate_operations_total{"))
        #expect(!other.contains("fencegate_gateway_sessions_refused_total{"))
        #expect(other.contains("fencegate_operations_in_flight 0.0\n"))
    }

    private func exposition(_ harness: ServiceHarness) -> String {
        String(decoding: harness.service.metrics.exposition(), as: UTF8.self)
    }
}
