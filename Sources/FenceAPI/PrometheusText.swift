import FenceCore
import Foundation

/// Renders metrics in the Prometheus text exposition format (version 0.0.4).
enum PrometheusText {
    static func render(_ snapshot: FenceMetrics.Snapshot, responses: [Int: UInt64]) -> String {
        var lines: [String] = []
        lines.append("# HELP fencegate_operations_total Fence operations finished, by action, result and front end.")
        lines.append("# TYPE fencegate_operations_total counter")
        for (key, count) in snapshot.operations.sorted(by: { "\($0.key)" < "\($1.key)" }) {
            lines.append(
                "fencegate_operations_total{action=\"\(escape(key.action))\",result=\"\(escape(key.result))\",source=\"\(escape(key.source))\"} \(count)"
            )
        }
        lines.append("# HELP fencegate_operation_duration_seconds Time from request to result of fence operations.")
        lines.append("# TYPE fencegate_operation_duration_seconds histogram")
        for (action, histogram) in snapshot.latency.sorted(by: { $0.key < $1.key }) {
            let label = "action=\"\(escape(action))\""
            for (index, bound) in FenceMetrics.bucketBounds.enumerated() {
                lines.append(
                    "fencegate_operation_duration_seconds_bucket{\(label),le=\"\(bound)\"} \(histogram.bucketCounts[index])"
                )
            }
            lines.append("fencegate_operation_duration_seconds_bucket{\(label),le=\"+Inf\"} \(histogram.count)")
            lines.append("fencegate_operation_duration_seconds_sum{\(label)} \(histogram.sum)")
            lines.append("fencegate_operation_duration_seconds_count{\(label)} \(histogram.count)")
        }
        lines.append("# HELP fencegate_operations_in_flight Fence operations running now.")
        lines.append("# TYPE fencegate_operations_in_flight gauge")
        lines.append("fencegate_operations_in_flight \(snapshot.inFlight)")
        lines.append("# HELP fencegate_hypervisor_up 1 if the hypervisor was reachable at the last check, else 0.")
        lines.append("# TYPE fencegate_hypervisor_up gauge")
        lines.append("fencegate_hypervisor_up \(snapshot.hypervisorUp == true ? 1 : 0)")
        lines.append(
            "# HELP fencegate_audit_refusals_unrecorded_total Refused requests counted in a summary row instead of a row of their own (the audit rate limit)."
        )
        lines.append("# TYPE fencegate_audit_refusals_unrecorded_total counter")
        lines.append("fencegate_audit_refusals_unrecorded_total \(snapshot.refusalsUnrecorded)")
        lines.append(
            "# HELP fencegate_gateway_sessions_refused_total fence_xvm call backs and fence_virt connections turned away at their limits, by listener."
        )
        lines.append("# TYPE fencegate_gateway_sessions_refused_total counter")
        for (listener, count) in snapshot.sessionsTurnedAway.sorted(by: { $0.key < $1.key }) {
            lines.append("fencegate_gateway_sessions_refused_total{listener=\"\(escape(listener))\"} \(count)")
        }
        lines.append("# HELP fencegate_http_responses_total HTTP responses sent, by status code.")
        lines.append("# TYPE fencegate_http_responses_total counter")
        for (code, count) in responses.sorted(by: { $0.key < $1.key }) {
            lines.append("fencegate_http_responses_total{code=\"\(code)\"} \(count)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
