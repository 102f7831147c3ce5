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
        let open = try await onOwnThread { try RawConnection(port: port) }
        let first = try await onOwnThread { try open.answer("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") }
        #expect(first.hasPrefix("HTTP/1.1 200"), "\(first)")
        await group.triggerGracefulShutdown()
        try await waitUntil("new connections are refused") {
            (try? await onOwnThread { try RawConnection(port: port) }) == nil
        }
        let late = try await onOwnThread { try open.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") }
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

/// A plain TCP connection to 127.0.0.1 (blocking; use it off Swift's cooperative pool).
private final class RawConnection: @unchecked Sendable {
    private let descriptor: Int32

    struct Refused: Error {}

    init(port: UInt16) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(descriptor)
            throw Refused()
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    /// Sends `request` and reads until the server closes the connection (or 10 s pass without a byte).
    func exchange(_ request: String) throws -> String {
        send(request)
        var received: [UInt8] = []
        while receiveMore(into: &received) {}
        return String(decoding: received, as: UTF8.self)
    }

    /// Sends `request` and reads one answer, framed by its Content-Length, leaving the connection open; what
    /// arrived if the server closed first (or 10 s passed without a byte).
    func answer(_ request: String) throws -> String {
        send(request)
        var received: [UInt8] = []
        while receiveMore(into: &received) {
            guard let end = received.firstRange(of: Array("\r\n\r\n".utf8)) else { continue }
            let head = String(decoding: received[..<end.lowerBound], as: UTF8.self).lowercased()
            let length =
                head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            if received.count - end.upperBound >= length { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    private func send(_ request: String) {
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads what arrives next onto `received`; false once the server has closed (or 10 s passed).
    private func receiveMore(into received: inout [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        received += buffer.prefix(count)
        return true
    }
}
