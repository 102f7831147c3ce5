import FenceCore
import Foundation
import Store
import TestSupport
import Testing

@testable import Cluster

/// The metrics as Prometheus sees them, and the monitoring files (monitoring/, README "Monitoring") that use
/// them: every family the service can expose passes `promtool check metrics`, and the alerting rules and the
/// dashboard name only those families. (`scripts/test` runs the rules' own unit tests.)
@Suite("Monitoring: every metric family, the alerts and the dashboard")
struct MonitoringTests {
    @Test("an exposition with every family the sources name, cluster mode's included, passes promtool check metrics")
    func everyFamily() async throws {
        let text = try await Self.expositionWithEveryFamily()
        let exposed = Set(
            text.split(separator: "\n").compactMap { line in
                line.hasPrefix("# TYPE ") ? line.split(separator: " ")[2].description : nil
            }
        )
        // A family added to the sources must show here: this test makes the event that shows it.
        #expect(exposed == (try Self.familiesNamedInSources()), "\(text)")
        #expect(text.contains("fencegate_audit_log_writable 1.0\n"))
        #expect(text.contains("fencegate_audit_refusals_unrecorded_total 2\n"), "\(text)")
        // Prometheus's own checker accepts the exposition, lint included (names, types, units, help).
        try #require(
            FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool"),
            "promtool is missing: install prometheus (scripts/install-dependencies --tests)"
        )
        let check = try await runProgram("/usr/bin/promtool", ["check", "metrics"], standardInput: text)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)\n\(text)")
    }

    @Test("every dashboard panel has queries that parse (promtool) and name only families the service exposes")
    func dashboard() async throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/monitoring/fencegate-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let variables = (dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
        #expect(
            variables.contains { $0["name"] as? String == "datasource" && $0["query"] as? String == "prometheus" },
            "the dashboard needs a Prometheus data source variable"
        )
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        var rules = "groups:\n  - name: dashboard\n    rules:\n"
        var named = Set<String>()
        for panel in panels where panel["type"] as? String != "row" {
            let title = panel["title"] as? String ?? "?"
            let place = panel["gridPos"] as? [String: Int] ?? [:]
            #expect((place["x"] ?? 99) + (place["w"] ?? 99) <= 24 && (place["h"] ?? 0) > 0, "\(title): \(place)")
            #expect((panel["datasource"] as? [String: String])?["uid"] == "${datasource}", "\(title)")
            let targets = panel["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty, "\(title) has no query")
            for (index, target) in targets.enumerated() {
                let query = try #require(target["expr"] as? String, "\(title)")
                // Grafana's variables, as Grafana would fill them in.
                let filled = query.replacing("$__rate_interval", with: "1m").replacing("$instance", with: ".*")
                #expect(!filled.contains("$"), "\(title): a variable the test does not know: \(query)")
                let quoted = filled.replacing("'", with: "''")
                rules += "      - record: dashboard:panel_\(panel["id"] ?? "?")_\(index)\n        expr: '\(quoted)'\n"
                named.formUnion(Self.families(namedIn: query))
            }
        }
        let scratch = try TemporaryDirectory()
        let rulesFile = scratch.file("dashboard-queries.yml")
        try rules.write(toFile: rulesFile, atomically: true, encoding: .utf8)
        let check = try await runProgram("/usr/bin/promtool", ["check", "rules", rulesFile])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)\n\(rules)")
        let exposed = try Self.familiesNamedInSources()
        #expect(named.subtracting(exposed).isEmpty, "the dashboard names metrics the service does not expose")
        // Every family is on the dashboard.
        #expect(exposed.subtracting(named).isEmpty, "families missing from the dashboard")
    }

    @Test("the alerting rules name only families the service exposes")
    func alerts() throws {
        let rules = try String(contentsOfFile: packageRoot + "/monitoring/fencegate-alerts.yml", encoding: .utf8)
        let named = Self.families(namedIn: rules)
        #expect(named.contains("fencegate_audit_log_writable") && named.contains("fencegate_cluster_quorate"))
        #expect(named.subtracting(try Self.familiesNamedInSources()).isEmpty, "\(named)")
    }

    /// The metric names the sources spell as string literals: every family the service can expose.
    private static func familiesNamedInSources() throws -> Set<String> {
        let sources = packageRoot + "/Sources"
        var names = Set<String>()
        for case let file as String in FileManager.default.enumerator(atPath: sources) ?? .init()
        where file.hasSuffix(".swift") {
            let text = try String(contentsOfFile: sources + "/" + file, encoding: .utf8)
            for match in text.matches(of: /"(fencegate_[a-z0-9_]+)"/) { names.insert(String(match.output.1)) }
        }
        return names
    }

    /// The families `text` names; a histogram's series (`_bucket`, `_count`, `_sum`) name their family.
    private static func families(namedIn text: String) -> Set<String> {
        Set(
            text.matches(of: /fencegate_[a-z0-9_]*[a-z0-9]/).map { match in
                String(match.output).replacing(/_(bucket|count|sum)$/, with: "")
            }
        )
    }

    /// `GET /metrics` after an event of every kind: fences that succeed, fail and are refused, refusals beyond
    /// the audit rate limit (only counted), refusals spared their rows on the space kept for fences, a gateway
    /// session turned away (recorded as the fence_xvm gateway
    /// records it) and cluster mode's metrics, recorded through `ClusterMetrics` on the service's registry
    /// without a corosync (the cluster labs in GatewayInteropTests show them from real clusters).
    private static func expositionWithEveryFamily() async throws -> String {
        var configuration = FenceService.Configuration()
        configuration.refusalsPerClientPerMinute = 1
        // The space kept for fences, put to use by the first fence's commit as on a nearly full disk: the
        // refusals after it are spared their rows.
        var reserve = AuditSpaceReserve()
        reserve.highWater = 0
        reserve.lowWater = Int.max
        var text = ""
        try await APIHarness.withRunning(reserve: reserve, service: configuration) { api in
            #expect(try await api.curl("POST", "/domains/pcmk1/off", token: api.ops).status == 200)
            #expect(try await api.curl("POST", "/domains/ghost/off", token: api.ops).status == 404)
            #expect(try await api.curl("POST", "/domains/pcmk1/on", token: api.viewer).status == 403)
            for _ in 0..<3 {
                #expect(try await api.curl("POST", "/domains/pcmk2/off", token: "fgt_wrong").status == 401)
            }
            api.harness.service.metrics.sessionTurnedAway(listener: "tcp")
            let cluster = ClusterMetrics(metrics: api.harness.service.metrics)
            cluster.forwarded(result: "success", duration: .milliseconds(8))
            cluster.executed(result: "success")
            var view = ClusterMembership.View(hostName: "host1", role: .host)
            view.quorate = true
            cluster.record(view)
            let response = try await api.curl("GET", "/metrics", token: api.ops)
            #expect(response.status == 200)
            text = response.text
        }
        return text
    }
}
