import FenceAPI
import FenceCore
import Foundation
import Store
import TestSupport
import Testing

@Suite("HTTP API: failures map to their documented status")
struct FailureStatusTests {
    @Test("409 when the domain is busy and the client asked not to wait; 504 when an operation times out")
    func busyAndTimeout() async throws {
        try await APIHarness.withRunning { api in
            let (hung, gate) = try await api.harness.offHungInDestroy("pcmk1")
            let busy = try await api.curl("POST", "/domains/pcmk1/on?wait=false", token: api.ops)
            #expect(busy.status == 409)
            #expect(busy.json["type"] as? String == "urn:fencegate:problem:domain-busy")
            let timedOut = try await api.curl("POST", "/domains/pcmk1/reboot?timeout=1", token: api.ops)
            #expect(timedOut.status == 504)
            #expect(timedOut.json["type"] as? String == "urn:fencegate:problem:timed-out")

            // Meanwhile, other domains are served.
            #expect(try await api.curl("POST", "/domains/pcmk2/off", token: api.ops).status == 200)
            gate.open()
            #expect(try await hung.value.power == .off)
            let rows = try await api.harness.rows()
            let byAction = Dictionary(grouping: rows, by: \.action)
            #expect(byAction["on"]?.first?.errorCode == "domain_busy")
            #expect(byAction["reboot"]?.first?.result == .timedOut)
        }
    }

    @Test("502 when the hypervisor fails the operation")
    func operationFailed() async throws {
        try await APIHarness.withRunning { api in
            api.harness.faulty.inject(.fail, into: .destroy, for: Fixtures.uuids["pcmk3"]!)
            let response = try await api.curl("POST", "/domains/pcmk3/off", token: api.ops)
            #expect(response.status == 502)
            #expect(response.json["type"] as? String == "urn:fencegate:problem:operation-failed")
        }
    }

    @Test("503 when the hypervisor is unreachable; /healthz says so")
    func hypervisorUnavailable() async throws {
        try await APIHarness.withRunning(uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock") { api in
            let response = try await api.curl("POST", "/domains/pcmk1/off", token: api.ops)
            #expect(response.status == 503)
            #expect(response.json["type"] as? String == "urn:fencegate:problem:hypervisor-unavailable")
            #expect(response.headers["retry-after"] == "5")
            #expect(try await api.curl("GET", "/domains", token: api.ops).status == 503)
            let health = try await api.curl("GET", "/healthz")
            #expect(health.status == 503)
            #expect(health.json["hypervisor"] as? String == "unavailable")
            #expect(health.json["audit_log"] as? String == "ok")
        }
    }

    @Test("503 and nothing done when the audit log cannot be written")
    func auditUnavailable() async throws {
        try await APIHarness.withRunning(busyTimeout: .milliseconds(100)) { api in
            let holder = try Database(path: api.harness.store.path)
            try holder.execute("BEGIN EXCLUSIVE")
            let response = try await api.curl("POST", "/domains/pcmk1/off", token: api.ops)
            #expect(response.status == 503)
            #expect(response.json["type"] as? String == "urn:fencegate:problem:audit-unavailable")
            #expect(try api.harness.state("pcmk1") == .running)
            // The storage error (SQLite's message, the database's path) stays in the service's log. An anonymous
            // fence request is refused (401) whether or not its refusal could be recorded.
            let anonymous = try await api.curl("POST", "/domains/pcmk1/off")
            #expect(anonymous.status == 401)
            for answer in [response, anonymous] {
                #expect(
                    !answer.text.contains(api.harness.store.path) && !answer.text.lowercased().contains("sqlite"),
                    "\(answer.text)"
                )
                #expect(!answer.text.contains("locked"), "\(answer.text)")
            }
            let health = try await api.curl("GET", "/healthz")
            #expect(health.status == 503)
            #expect(health.json["audit_log"] as? String == "unavailable")
            try holder.execute("ROLLBACK")
            #expect(try await api.curl("GET", "/healthz").status == 200)
        }
    }

    @Test("a query of the audit log past its time limit is stopped: 503 audit-query-stopped; fences go on")
    func auditQueryStopped() async throws {
        var configuration = FenceService.Configuration()
        configuration.auditQueryTimeLimit = .zero
        try await APIHarness.withRunning(service: configuration) { api in
            // 5,000 rows of pcmk1: the page of a token limited to pcmk1 and pcmk2 reads and sorts them all.
            let requested = Date(timeIntervalSince1970: 1_800_000_000)
            try await api.harness.store.insertFinished(
                (0..<5000).map { index in
                    (
                        AuditIntent(
                            source: "multicast",
                            requester: "198.18.0.11",
                            clientAddress: nil,
                            target: "pcmk1",
                            domainName: "pcmk1",
                            domainUUID: nil,
                            action: "status",
                            requestedAt: requested.addingTimeInterval(Double(index))
                        ),
                        AuditCompletion(
                            result: .success,
                            powerState: "running",
                            errorCode: nil,
                            message: nil,
                            finishedAt: requested.addingTimeInterval(Double(index))
                        )
                    )
                }
            )
            let response = try await api.curl("GET", "/operations", token: api.scoped)
            #expect(response.status == 503)
            #expect(response.json["type"] as? String == "urn:fencegate:problem:audit-query-stopped")
            #expect((response.json["detail"] as? String)?.contains("narrow it") == true, "\(response.text)")
            #expect(response.headers["retry-after"] == "5")
            #expect(try await api.curl("POST", "/domains/pcmk3/off", token: api.ops).status == 200)
            #expect(try api.harness.state("pcmk3") == .shutOff)
        }
    }

    @Test("non-UTF-8 in the path is a 400, not a crash")
    func invalidEncoding() async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl("GET", "/domains/%FF%FE", token: api.ops)
            #expect(response.status == 400)
            #expect(try await api.curl("GET", "/healthz").status == 200)
        }
    }
}

@Suite("HTTP API: concurrency and transport")
struct TransportTests {
    @Test("a slow operation on one domain does not delay requests on other domains")
    func parallelDomains() async throws {
        try await APIHarness.withRunning { api in
            let gate = Gate()
            let hung = ["pcmk1", "pcmk2", "pcmk3"]
            for name in hung { api.harness.faulty.inject(.hang(gate), into: .destroy, for: Fixtures.uuids[name]!) }
            let requests = hung.map { name in
                Task { try await api.curl("POST", "/domains/\(name)/off", token: api.ops) }
            }
            try await waitUntil("three offs are blocked in the hypervisor") { gate.arrived == hung.count }
            #expect(try await api.curl("POST", "/domains/pcmk4/off", token: api.ops).status == 200)
            #expect(try await api.curl("GET", "/domains/pcmk5", token: api.ops).status == 200)
            #expect(api.server.inFlight == hung.count)
            gate.open()
            for request in requests { #expect(try await request.value.status == 200) }
        }
    }

    @Test("HTTPS with a PEM certificate and key")
    func https() async throws {
        let directory = try TemporaryDirectory()
        let (certificate, key) = (directory.file("cert.pem"), directory.file("key.pem"))
        let (status, output) = try await run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                "-subj", "/CN=127.0.0.1",
            ]
        )
        #expect(status == 0, "\(output)")
        let pem = (
            try String(contentsOfFile: certificate, encoding: .utf8), try String(contentsOfFile: key, encoding: .utf8)
        )
        var server = HTTPServerConfiguration()
        server.tls = pem
        try await APIHarness.withRunning(server: server) { api in
            #expect(api.baseURL.hasPrefix("https://"))
            let response = try await api.curl("GET", "/domains/pcmk1", token: api.ops)
            #expect(response.status == 200)
            #expect(response.json["name"] as? String == "pcmk1")
            let (plainStatus, _) = try await run(
                "/usr/bin/curl",
                ["-s", "-o", "/dev/null", "http://127.0.0.1:\(api.server.port)/healthz"]
            )
            #expect(plainStatus != 0)
        }
    }

    @Test("a port in use is a clear start-up error")
    func portInUse() async throws {
        try await APIHarness.withRunning { api in
            var configuration = HTTPServerConfiguration()
            configuration.listen = ListenAddress(host: "127.0.0.1", port: api.server.port)
            #expect {
                _ = try HTTPServer(configuration: configuration, logger: ServiceHarness.logger) { _ in
                    HTTPResponse(status: 200)
                }
            } throws: { error in
                "\(error)".contains("cannot listen on 127.0.0.1:\(api.server.port)") && "\(error)".contains("in use")
            }
        }
    }

    @Test(
        "listen addresses parse as documented",
        arguments: [
            ("127.0.0.1:8786", "127.0.0.1", UInt16(8786), true), ("0.0.0.0:443", "0.0.0.0", UInt16(443), false),
            ("[::1]:9000", "::1", UInt16(9000), true), ("::1", "::1", ListenAddress.defaultPort, true),
            ("10.1.2.3", "10.1.2.3", ListenAddress.defaultPort, false),
        ]
    )
    func listenAddresses(text: String, host: String, port: UInt16, loopback: Bool) throws {
        let address = try #require(ListenAddress(text))
        #expect(address.host == host)
        #expect(address.port == port)
        #expect(address.isLoopback == loopback)
    }

    @Test(
        "bad listen addresses are rejected",
        arguments: ["localhost:80", "1.2.3.4:99999", "[::1", "host", "1.2.3.4:x"]
    )
    func badListenAddresses(text: String) {
        #expect(ListenAddress(text) == nil)
    }
}
