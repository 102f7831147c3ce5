import FenceAPI
import FenceCore
import Foundation
import Logging
import ServiceLifecycle
import Store
import Synchronization
import TestSupport
import Testing

/// The HTTP server as a lifecycle service: graceful shutdown stops new connections, answers requests on
/// connections already open with 503, and lets the request under way finish before `run()` returns.
@Suite("HTTP server: graceful shutdown")
struct HTTPShutdownTests {
    @Test("on graceful shutdown: new connections refused, 503 on open ones, the fence under way finishes")
    func drainsOnGracefulShutdown() async throws {
        let harness = try await ServiceHarness()
        let gate = Gate()
        harness.faulty.inject(.hang(gate), into: .destroy, for: Fixtures.uuids["pcmk1"]!)
        let token = try await AccessTokens(store: harness.store).create(name: "ops", scope: .fence, domainPatterns: [])
        let api = FenceHTTPAPI(service: harness.service, logger: ServiceHarness.logger)
        var configuration = HTTPServerConfiguration()
        configuration.listen = ListenAddress(host: "127.0.0.1", port: 0)
        let server = try HTTPServer(configuration: configuration, logger: ServiceHarness.logger) {
            await api.handle($0)
        }
        let port = server.port
        let group = ServiceGroup(services: [server], logger: ServiceHarness.logger)
        let finished = Atomic<Bool>(false)
        let running = Task {
            try await group.run()
            finished.store(true, ordering: .releasing)
        }

        let off = Task {
            try await runProgram(
                "/usr/bin/curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                    "Authorization: Bearer \(token.secret)", "http://127.0.0.1:\(port)/domains/pcmk1/off",
                ]
            )
        }
        try await waitUntil("the fence is under way") { gate.arrived == 1 }
        // A keep-alive client's connection, open before the shutdown; its next request comes after. Its first
        // answer shows that the server has accepted it: a connection still in the kernel's backlog when the
        // server stops listening is reset instead.
        let open = try await onOwnThread { try PipeliningClient(port: port) }
        let first = try await onOwnThread {
            open.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return String(decoding: open.receiveAnswer(timeout: 10), as: UTF8.self)
        }
        #expect(first.hasPrefix("HTTP/1.1 200"), "\(first)")
        await group.triggerGracefulShutdown()
        try await waitUntil("new connections are refused") {
            (try? await onOwnThread { try PipeliningClient(port: port) }) == nil
        }
        let late = try await onOwnThread {
            open.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return String(decoding: open.receiveUntilClosed(timeout: 10).bytes, as: UTF8.self)
        }
        #expect(late.hasPrefix("HTTP/1.1 503"), "\(late)")
        #expect(late.contains("urn:fencegate:problem:shutting-down"), "\(late)")
        let stoppedEarly = finished.load(ordering: .acquiring)
        #expect(!stoppedEarly, "the server stopped with a fence under way")

        gate.open()
        let answered = try await off.value
        #expect(answered.stdout == "200", "\(answered.stdout) \(answered.stderr)")
        try await running.value
        let rows = try await harness.rows()
        #expect(rows.map(\.action) == ["off"] && rows.first?.result == .success, "\(rows)")
    }
}
