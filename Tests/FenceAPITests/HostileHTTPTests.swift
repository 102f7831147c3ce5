import FenceAPI
import Foundation
import Store
import TestSupport
import Testing

/// Requests an attacker or a broken client would send. What must hold: the documented status, no crash,
/// nothing fenced, and legitimate requests still served.
@Suite("HTTP API: hostile input")
struct HostileHTTPTests {
    /// Every action audited so far (refusals included); a fence that ran has a row with its action.
    static func actions(_ api: APIHarness) async throws -> [String] {
        try await api.harness.store.query(AuditQuery(limit: 1000)).records.map {
            "\($0.action) \($0.result?.rawValue ?? "-")"
        }
    }

    @Test(
        "path tricks never reach another route or another domain",
        arguments: [
            ("POST", "/domains/pcmk1%2Foff"), ("POST", "/domains/..%2Fpcmk1/off"),
            ("POST", "/domains/../domains/pcmk1/off"),
            ("POST", "//domains//pcmk1//off"), ("POST", "/domains/pcmk1/off/"), ("POST", "/domains/pcmk1/off%2F"),
            ("POST", "/domains/%2e%2e/off"), ("POST", "/domains/pcmk1%00/off"), ("POST", "/domains/pcmk1/off%00"),
            ("GET", "/operations/../domains"), ("POST", "/domains/" + String(repeating: "a", count: 4000) + "/off"),
        ]
    )
    func pathTricks(method: String, path: String) async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl(method, path, token: api.ops)
            #expect(
                [400, 404, 405, 414].contains(response.status),
                "\(method) \(path): \(response.status) \(response.text)"
            )
            // Nothing was switched off: every domain that was running still runs, and no off succeeded.
            #expect(try await Self.actions(api).allSatisfy { !$0.hasPrefix("off success") }, "\(path)")
            #expect(try await api.curl("GET", "/domains/pcmk1", token: api.ops).json["state"] as? String == "running")
        }
    }

    @Test(
        "garbled credentials are 401 with a challenge, whatever their shape",
        arguments: [
            "Bearer", "Bearer ", "Bearer  x", "Basic dXNlcjpwYXNzd29yZA==", "Token abc", "Bearer fgt_",
            "Bearer fgt_zz_zz",
            "Bearer fgt_0123456789abcdef_" + String(repeating: "A", count: 43) + "x",
            "Bearer " + String(repeating: "x", count: 8000),
            "Bearer \u{00e9}t\u{00e9}", "Bearer fgt_0123456789abcdef_%00%00",
        ]
    )
    func garbledCredentials(header: String) async throws {
        try await APIHarness.withRunning { api in
            let response = try await api.curl(
                "POST",
                "/domains/pcmk2/off",
                arguments: ["-H", "Authorization: \(header)"]
            )
            #expect(response.status == 401, "\(header.prefix(40)): \(response.status)")
            #expect(response.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try await Self.actions(api).allSatisfy { $0.hasSuffix("refused") })
        }
    }

    @Test("headers beyond the limit are refused without a crash; the server answers the next client")
    func hugeHeaders() async throws {
        try await APIHarness.withRunning { api in
            let filler = String(repeating: "x", count: 40_000)
            // libmicrohttpd answers 431 or closes the connection (curl then fails): both are a refusal.
            let refusals = [400, 413, 431]
            let status =
                (try? await api.curl("GET", "/domains/pcmk1", token: api.ops, arguments: ["-H", "X-Filler: \(filler)"]))?
                .status
            #expect(status == nil || refusals.contains(status!), "\(String(describing: status))")
            var many: [String] = []
            for index in 0..<2000 { many += ["-H", "X-Header-\(index): value"] }
            let manyStatus = (try? await api.curl("GET", "/domains/pcmk1", token: api.ops, arguments: many))?.status
            #expect(manyStatus == nil || refusals.contains(manyStatus!), "\(String(describing: manyStatus))")
            let next = try await api.curl("GET", "/domains/pcmk1", token: api.ops)
            #expect(next.status == 200)
        }
    }

    @Test("slow clients holding connections open do not lock out others, and one address cannot take them all")
    func slowClients() async throws {
        var server = HTTPServerConfiguration()
        server.maximumConnections = 64
        server.maximumConnectionsPerAddress = 16
        try await APIHarness.withRunning(server: server) { api in
            // 40 connections from 127.0.0.1 that send half a request line and then nothing.
            let port = api.server.port
            let held = try await onOwnThread {
                (0..<40).compactMap { _ in
                    SlowClient(host: "127.0.0.1", port: port, partial: "GET /domains/pcmk1 HTTP/1.1\r\nHost: x\r\n")
                }
            }
            #expect(held.count == 40)
            try await Task.sleep(for: .milliseconds(300))
            let refused = held.filter { !$0.isOpen }.count
            #expect(refused >= 40 - 16, "only \(refused) of the connections beyond the per-address limit were closed")
            // Another address (127.0.0.2, also loopback) is served while the slow ones are still held (for the
            // server's 30 s connection timeout): 15 s leaves room for a loaded test machine and still fails a
            // lock-out, which would last until the slow ones time out.
            let other = try await api.curl(
                "GET",
                "/domains/pcmk1",
                token: api.ops,
                arguments: ["--interface", "127.0.0.2", "--max-time", "15"]
            )
            #expect(other.status == 200)
            withExtendedLifetime(held) {}
        }
    }

    @Test("peers without credentials, from many addresses, cannot take the connections kept for clients with them")
    func reserveForCredentialedClients() async throws {
        var server = HTTPServerConfiguration()
        server.maximumConnections = 24
        server.connectionsReservedForCredentialed = 8
        server.maximumConnectionsPerAddress = 0
        try await APIHarness.withRunning(server: server) { api in
            // 127.0.0.1 presents a valid fence token once, as Pacemaker's monitor of a fence device does;
            // 127.0.0.40 a read token only, which does not count.
            #expect(try await api.curl("GET", "/domains/pcmk1", token: api.ops).status == 200)
            let reader = try await api.curl(
                "GET",
                "/domains/pcmk1",
                token: api.viewer,
                arguments: ["--interface", "127.0.0.40"]
            )
            #expect(reader.status == 200)
            // 24 slow clients from 4 other addresses, enough for every connection: the 16 not kept are taken,
            // the rest refused. (The server may take a moment to see curl's connection closed.)
            try await Task.sleep(for: .milliseconds(300))
            let port = api.server.port
            let held = try await onOwnThread {
                (0..<24).compactMap { index in
                    SlowClient(source: UInt8(10 + index % 4), port: port, partial: "GET /healthz HTTP/1.1\r\n")
                }
            }
            #expect(held.count == 24)
            // Refused connections are closed once libmicrohttpd gets to them.
            try? await waitUntil("the refused connections are closed", limit: .seconds(10)) {
                held.filter(\.isOpen).count <= 16
            }
            let open = held.filter(\.isOpen).count
            #expect((15...16).contains(open), "\(open) of 24 held")
            // Addresses without a fence token are refused too; the one with one is answered: a fence.
            let strangers = try await onOwnThread {
                [30, 40].compactMap { SlowClient(source: UInt8($0), port: port, partial: "") }
            }
            #expect(strangers.count == 2)
            try? await waitUntil("the strangers' connections are closed", limit: .seconds(10)) {
                strangers.allSatisfy { !$0.isOpen }
            }
            #expect(strangers.allSatisfy { !$0.isOpen })
            let fence = try await api.curl(
                "POST",
                "/domains/pcmk1/off",
                token: api.ops,
                arguments: ["--max-time", "15"]
            )
            #expect(fence.status == 200)
            let metrics = try await api.curl("GET", "/metrics", token: api.viewer)
            let refused = 24 - open + 2  // the slow clients not held, and the strangers
            #expect(metrics.text.contains("fencegate_http_connections_refused_total \(refused)\n"), "\(metrics.text)")
            withExtendedLifetime(held) {}
        }
    }

    @Test("many connections at once: every request is answered; the server survives")
    func manyConnections() async throws {
        var server = HTTPServerConfiguration()
        server.maximumConnectionsPerAddress = 0
        try await APIHarness.withRunning(server: server) { api in
            let port = api.server.port
            let token = api.viewer
            // 200 connections opened and sent at once from one thread (no process per request), then read.
            let statuses = try await onOwnThread { () -> [Int] in
                let clients = (0..<200).compactMap { index in
                    SlowClient(
                        host: "127.0.0.1",
                        port: port,
                        partial:
                            "GET /domains/pcmk\(index % 6 + 1) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\n"
                            + "Connection: close\r\n\r\n"
                    )
                }
                return clients.map { $0.statusCode(timeout: 20) }
            }
            #expect(statuses.count == 200)
            #expect(
                statuses.allSatisfy { $0 == 200 },
                "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))"
            )
            let health = try await api.curl("GET", "/healthz")
            #expect(health.status == 200)
        }
    }
}

/// A TCP connection that sends part of a request and then nothing (a slowloris client).
final class SlowClient: @unchecked Sendable {
    private let descriptor: Int32

    init?(host: String, port: UInt16, partial: String) {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(descriptor)
            return nil
        }
        _ = partial.withCString { send(descriptor, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// From 127.0.0.`source` (a loopback address of its own) to the server on 127.0.0.1.
    init?(source: UInt8, port: UInt16, partial: String) {
        descriptor = HTTPLoad.connect(port: port, source: source)
        guard descriptor >= 0 else { return nil }
        _ = partial.withCString { send(descriptor, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// False once the server has closed its side (a read sees end of file or an error).
    var isOpen: Bool {
        var probe = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&probe, 1, 0) > 0 else { return true }
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }

    /// Reads the response's status code (0 if the connection closed first, -1 if `timeout` seconds passed).
    func statusCode(timeout: Int32) -> Int {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while !received.contains(0x0A) {
            var probe = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&probe, 1, timeout * 1000) > 0 else { return -1 }
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { return 0 }
            received += buffer.prefix(count)
        }
        let line = String(decoding: received, as: UTF8.self)
        let parts = line.split(separator: " ")
        return parts.count > 1 ? Int(parts[1]) ?? 0 : 0
    }

    deinit {
        close(descriptor)
    }
}
