import FenceAPI
import FenceCore
import Foundation
import Store
import TestSupport
import Testing

@Suite("HTTP API: endpoints")
struct EndpointTests {
    @Test("GET /domains lists every domain with state and power")
    func listDomains() async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl("GET", "/domains", token: api.ops)
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "application/json")
            let domains = try #require(response.json["domains"] as? [[String: Any]])
            #expect(domains.compactMap { $0["name"] as? String } == Fixtures.uuids.keys.sorted())
            let stopped = try #require(domains.first { $0["name"] as? String == "stopped1" })
            #expect(stopped["uuid"] as? String == Fixtures.uuids["stopped1"])
            #expect(stopped["state"] as? String == "shut-off")
            #expect(stopped["power"] as? String == "off")
            #expect(stopped["persistent"] as? Bool == true)
            let rows = try await api.harness.rows()
            #expect(rows.map(\.action) == ["list"] && rows.first?.result == .success, "\(rows)")
            #expect(rows.first?.message == "\(Fixtures.uuids.count) domains")
        }
    }

    @Test("GET /domains/{domain} by name or UUID; unknown is 404; too long is 400")
    func getDomain() async throws {
        try await APIHarness.withRunning { api in
            let byName = try await api.curl("GET", "/domains/paused1", token: api.ops)
            #expect(byName.status == 200)
            #expect(byName.json["state"] as? String == "paused")
            #expect(byName.json["power"] as? String == "on")
            let byUUID = try await api.curl(
                "GET",
                "/domains/\(Fixtures.uuids["transient1"]!.uppercased())",
                token: api.ops
            )
            #expect(byUUID.json["name"] as? String == "transient1")
            #expect(byUUID.json["persistent"] as? Bool == false)
            let unknown = try await api.curl("GET", "/domains/ghost", token: api.ops)
            #expect(unknown.status == 404)
            #expect(unknown.json["type"] as? String == "urn:fencegate:problem:domain-not-found")
            #expect(
                try await api.curl("GET", "/domains/" + String(repeating: "x", count: 257), token: api.ops).status
                    == 400
            )
            // Each read is audited as a status, with what it read; the over-long name gets no row (400 first).
            let rows = try await api.harness.rows()
            #expect(rows.map(\.action) == ["status", "status", "status"])
            #expect(rows.map(\.result) == [.success, .success, .failure])
            #expect(rows.map(\.domainName) == ["paused1", "transient1", nil])
            #expect(rows[0].powerState == "on" && rows[0].source == "http" && rows[0].requester == "ops")
            #expect(rows[2].errorCode == "domain_not_found" && rows[2].target == "ghost")
        }
    }

    @Test("POST off, on, reboot run through the service and are audited with the token and client address")
    func fenceActions() async throws {
        try await APIHarness.withRunning { api in
            let off = try await api.curl("POST", "/domains/pcmk1/off", token: api.ops)
            #expect(off.status == 200)
            #expect(off.json["action"] as? String == "off")
            #expect(off.json["result"] as? String == "success")
            #expect(off.json["power"] as? String == "off")
            #expect((off.json["domain"] as? [String: Any])?["state"] as? String == "shut-off")
            #expect(off.json["duration_seconds"] as? Double != nil)
            #expect(off.json.keys.contains("note"))
            #expect(try api.harness.state("pcmk1") == .shutOff)

            let again = try await api.curl("POST", "/domains/pcmk1/off", token: api.ops)
            #expect(again.json["note"] as? String == "already off")
            let on = try await api.curl("POST", "/domains/pcmk1/on", token: api.ops)
            #expect(on.json["power"] as? String == "on")
            let reboot = try await api.curl("POST", "/domains/stopped1/reboot", token: api.ops)
            #expect(reboot.json["power"] as? String == "off")
            #expect(reboot.json["note"] as? String == "was off; left off")

            let rows = try await api.harness.rows()
            #expect(rows.map(\.action) == ["off", "off", "on", "reboot"])
            #expect(rows.allSatisfy { $0.source == "http" && $0.requester == "ops" && $0.clientAddress == "127.0.0.1" })
            #expect(rows.allSatisfy { $0.result == .success && $0.state == .finished })
            #expect(
                rows.map(\.id)
                    == [off, again, on, reboot].compactMap { ($0.json["operation_id"] as? Int).map(Int64.init) }
            )

            let record = try await api.curl("GET", "/operations/\(rows[0].id)", token: api.viewer)
            #expect(record.status == 200)
            #expect(record.json["requester"] as? String == "ops")
            #expect(record.json["domain_uuid"] as? String == Fixtures.uuids["pcmk1"])
            #expect(record.json["power"] as? String == "off")
        }
    }

    @Test("errors: unknown route 404, wrong method 405 with Allow, status is not a POST action")
    func routing() async throws {
        try await APIHarness.withRunning { api in
            for path in ["/", "/nope", "/domains/pcmk1/explode", "/domains/pcmk1/off/extra", "/domains/../healthz"] {
                let response = try await api.curl("GET", path, token: api.ops)
                #expect(response.status == 404, "\(path)")
                #expect(response.json["type"] as? String == "urn:fencegate:problem:not-found", "\(path)")
            }
            #expect(try await api.curl("POST", "/domains/pcmk1/status", token: api.ops).status == 404)
            let wrong = try await api.curl("DELETE", "/domains/pcmk1", token: api.ops)
            #expect(wrong.status == 405)
            #expect(wrong.headers["allow"] == "GET, HEAD")
            let get = try await api.curl("GET", "/domains/pcmk1/off", token: api.ops)
            #expect(get.status == 405)
            #expect(get.headers["allow"] == "POST")
            #expect(try api.harness.state("pcmk1") == .running)
            #expect(try await api.curl("HEAD", "/domains", token: api.ops, arguments: ["-I"]).status == 200)
        }
    }

    @Test(
        "bad parameters are 400 problems",
        arguments: [
            "/operations?limit=0", "/operations?limit=1001", "/operations?limit=ten", "/operations?cursor=garbage",
            "/operations?since=yesterday", "/operations?until=2026-13-01T00:00:00Z",
            "/operations?since=2026-02-29T00:00:00Z", "/operations?result=maybe",
            "/operations?domain=", "/operations/0", "/operations/abc",
        ]
    )
    func badQuery(path: String) async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl("GET", path, token: api.ops)
            #expect(response.status == 400, "\(path)")
            #expect(response.json["type"] as? String == "urn:fencegate:problem:bad-request")
            #expect(response.json["status"] as? Int == 400)
        }
    }

    @Test(
        "bad fence parameters are refused before anything runs",
        arguments: [
            "?wait=maybe", "?timeout=0", "?timeout=0.5", "?timeout=-1", "?timeout=3601", "?timeout=soon",
            "?timeout=5e-324",
        ]
    )
    func badFenceParameters(query: String) async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl("POST", "/domains/pcmk1/off\(query)", token: api.ops)
            #expect(response.status == 400)
            #expect(try api.harness.state("pcmk1") == .running)
        }
    }

    @Test("a body larger than the limit is 413, with or without a Content-Length")
    func bodyTooLarge() async throws {
        var server = HTTPServerConfiguration()
        server.maximumBodyBytes = 1024
        try await APIHarness.withRunning(server: server) { api in
            let big = api.harness.directory.file("big.json")
            try Data(repeating: UInt8(ascii: "a"), count: 4096).write(to: URL(fileURLWithPath: big))
            let declared = try await api.curl(
                "POST",
                "/domains/pcmk1/off",
                token: api.ops,
                arguments: ["--data-binary", "@\(big)"]
            )
            #expect(declared.status == 413)
            #expect(declared.json["type"] as? String == "urn:fencegate:problem:payload-too-large")
            let chunked = try await api.curl(
                "POST",
                "/domains/pcmk1/off",
                token: api.ops,
                arguments: ["-H", "Transfer-Encoding: chunked", "--data-binary", "@\(big)"]
            )
            #expect(chunked.status == 413)
            #expect(try api.harness.state("pcmk1") == .running)
            let small = try await api.curl("POST", "/domains/pcmk1/off", token: api.ops, arguments: ["--data", "{}"])
            #expect(small.status == 200)
        }
    }

    @Test("GET /operations filters and pages with a cursor")
    func operations() async throws {
        try await APIHarness.withRunning { api in
            for path in ["/domains/pcmk1/off", "/domains/pcmk2/off", "/domains/pcmk1/on", "/domains/ghost/off"] {
                _ = try await api.curl("POST", path, token: api.ops)
            }
            func ids(_ query: String) async throws -> [Int] {
                let page = try await api.curl("GET", "/operations\(query)", token: api.viewer)
                #expect(page.status == 200, "\(query)")
                return (page.json["operations"] as? [[String: Any]])?.compactMap { $0["id"] as? Int } ?? []
            }
            #expect(try await ids("") == [4, 3, 2, 1])
            #expect(try await ids("?domain=pcmk1") == [3, 1])
            #expect(try await ids("?domain=\(Fixtures.uuids["pcmk2"]!)") == [2])
            #expect(try await ids("?action=on") == [3])
            #expect(try await ids("?result=failure") == [4])
            #expect(try await ids("?source=http&requester=ops") == [4, 3, 2, 1])
            #expect(try await ids("?requester=viewer") == [])
            #expect(try await ids("?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00.5%2B01:00") == [4, 3, 2, 1])
            #expect(try await ids("?until=2000-01-01T00:00:00Z") == [])

            var seen: [Int] = []
            var cursor: String?
            repeat {
                let page = try await api.curl(
                    "GET",
                    "/operations?limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""),
                    token: api.ops
                )
                seen += (page.json["operations"] as? [[String: Any]])?.compactMap { $0["id"] as? Int } ?? []
                cursor = page.json["next_cursor"] as? String
                #expect(page.json.keys.contains("next_cursor"))
            } while cursor != nil
            #expect(seen == [4, 3, 2, 1])
            #expect(try await api.curl("GET", "/operations/99", token: api.ops).status == 404)
        }
    }

    @Test("GET /metrics counts operations by action, result and front end")
    func metrics() async throws {
        try await APIHarness.withRunning { api in
            _ = try await api.curl("POST", "/domains/pcmk1/off", token: api.ops)
            _ = try await api.curl("POST", "/domains/ghost/off", token: api.ops)
            _ = try await api.curl("POST", "/domains/pcmk1/on", token: api.viewer)
            let response = try await api.curl("GET", "/metrics", token: api.ops)
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            let text = response.text
            #expect(text.contains("fencegate_operations_total{action=\"off\",result=\"success\",source=\"http\"} 1"))
            #expect(text.contains("fencegate_operations_total{action=\"off\",result=\"failure\",source=\"http\"} 1"))
            #expect(text.contains("fencegate_operations_total{action=\"on\",result=\"refused\",source=\"http\"} 1"))
            #expect(text.contains("fencegate_operation_duration_seconds_count{action=\"off\"} 1"))
            #expect(text.contains("fencegate_operations_in_flight 0.0\n"))  // a gauge: printed as a Double
            #expect(text.contains("fencegate_http_responses_total{code=\"403\"} 1"))
            #expect(text.contains("# HELP fencegate_operations_total Fence operations finished, by action, result"))
            // Prometheus's own checker (`promtool check metrics`) runs over every family in MonitoringTests.
        }
    }

    @Test("GET /healthz: 200 when all is well")
    func health() async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl("GET", "/healthz")
            #expect(response.status == 200)
            #expect(response.json["status"] as? String == "ok")
            #expect(response.json["hypervisor"] as? String == "ok")
            #expect(response.json["audit_log"] as? String == "ok")
        }
    }
}
