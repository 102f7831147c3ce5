import Foundation
import Store
import TestSupport
import Testing

@testable import MulticastGateway

/// Text from requests reaches the log escaped, in both formats: a newline, a terminal escape or a
/// bidirectional override in a domain name or a path cannot forge a log line or steer a terminal.
@Suite("Log lines cannot be forged from requests")
struct LogInjectionTests {
    @Test(
        "a domain name with a newline and escapes (fence_virt -T, signed) and a raw path (HTTP, anonymous)",
        arguments: ["text", "json"]
    )
    func forgedLines(format: String) async throws {
        let fencegate = try FencegateBinary()
        let keyPath = fencegate.directory.file("key")
        #expect(try await fencegate.run(["keygen", keyPath]).status == 0)
        let serve = try fencegate.start([
            "serve", "--uri", Fixtures.clusterURI, "--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0",
            "--key-file", keyPath, "--log-level", "debug", "--log-format", format,
        ])
        defer { if serve.process.isRunning { kill(serve.process.processIdentifier, SIGKILL) } }
        try await waitUntil("serve is ready") { serve.stdout.contains("fencegate serving") || !serve.process.isRunning }
        let tcpPort = try #require(
            serve.stdout.firstMatch(of: /fence_virt on tcp 127\.0\.0\.1:([0-9]+)/).flatMap { UInt16($0.1) }
        )
        let httpPort = try #require(
            serve.stdout.firstMatch(of: /http:\/\/127\.0\.0\.1:([0-9]+)/).flatMap { UInt16($0.1) }
        )

        // A key holder's request whose domain field (63 bytes at most) says: a newline, then a forged line, a
        // terminal escape, a right-to-left override.
        let forged = "pcmk1\n2026-11-29T00:00:00+0000 FORGED\u{1B}[2J\u{202E}"
        let key = [UInt8](try Data(contentsOf: URL(fileURLWithPath: keyPath)))
        let request = try FenceXVMRequest(
            operation: .off,
            domain: forged,
            address: [],
            port: 0,
            sequenceNumber: 7,
            family: 0
        )
        .signed(hashType: .sha256, key: key)
        let result = try await onOwnThread { () throws -> UInt8 in
            let connection = try Socket.connection(
                to: SocketAddress(host: "127.0.0.1", port: tcpPort)!,
                timeout: .seconds(5)
            )
            try connection.write(request.bytes, timeout: .seconds(5))
            return try FenceXVMClient.answerCallback(on: connection, auth: .sha256, key: key, timeout: .seconds(10))
        }
        #expect(result == 1, "an invalid target is a failure")
        // Anyone's raw path, with an escape, DEL and a C1 control in it (libmicrohttpd passes them on).
        let raw = try await onOwnThread { () throws -> String in
            let connection = try Socket.connection(
                to: SocketAddress(host: "127.0.0.1", port: httpPort)!,
                timeout: .seconds(5)
            )
            try connection.write(
                Array("GET /domains/x\u{1B}[31mred\u{7F}\u{85}y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8),
                timeout: .seconds(5)
            )
            return String(decoding: try connection.read(exactly: 12, timeout: .seconds(5)), as: UTF8.self)
        }
        #expect(raw.hasPrefix("HTTP/1.1 "), "\(raw)")
        kill(serve.process.processIdentifier, SIGTERM)
        try await waitUntil("serve exits") { !serve.process.isRunning }

        let log = serve.stderr
        let bytes = Array(log.utf8)
        #expect(!bytes.contains(0x1B) && !bytes.contains(0x7F), "a control byte reached the log")
        #expect(!log.unicodeScalars.contains { $0.value == 0x85 || $0.value == 0x202E })
        let lines = log.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(!lines.isEmpty)
        // Each value, as the log's reader sees it: the text line itself, or each JSON object's fields decoded.
        let escaped = "pcmk1\\n2026-11-29T00:00:00+0000 FORGED\\u{1B}[2J\\u{202E}"
        let values: [String]
        switch format {
        case "json":
            let objects = lines.compactMap {
                (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
            }
            #expect(objects.count == lines.count, "\(log)")
            values = objects.flatMap { $0.values.compactMap { $0 as? String } }
        default:
            #expect(lines.allSatisfy { $0.wholeMatch(of: /[0-9]{4}-[0-9]{2}-[0-9]{2}T.*/) != nil }, "\(log)")
            #expect(!lines.contains { $0.contains("FORGED") && !$0.contains("pcmk1\\n") }, "a line was forged: \(log)")
            values = lines.map(String.init)
        }
        #expect(values.contains { $0.contains(escaped) }, "\(log)")
        #expect(values.contains { $0.contains("/domains/x\\u{1B}[31mred\\u{7F}\\u{85}y") }, "\(log)")

        // The audit row keeps the request's target escaped the same way.
        let rows = try await AuditStore.open(path: fencegate.database, logger: ServiceHarness.logger).query(
            AuditQuery(limit: 10)
        ).records
        #expect(rows.map(\.target) == [escaped])
        #expect(rows.first?.errorCode == "invalid_target")
    }
}
