import Foundation
import TestSupport
import Testing

@testable import FenceAPI

/// A connection libmicrohttpd ends (here with a 505 to a pipelined HTTP/0.1 request) while the client's input
/// is unread, or before the client has taken everything, is closed in stages (`LingeringClose`): the client
/// gets every answer whole, then the end of the stream, never a reset that drops the rest.
@Suite("HTTP server: connections closed in stages", .serialized)
struct LingeringCloseTests {
    /// Larger than a loopback receive window, so that part of it is still in the server's kernel when
    /// libmicrohttpd closes.
    static let bigBody = [UInt8](repeating: UInt8(ascii: "a"), count: 512 * 1024)

    /// When input that is still unread reaches the server.
    enum Case: String, CustomTestStringConvertible, CaseIterable {
        /// Input that arrived while the first answer was being made (the connection is suspended and reads
        /// nothing), and most of a long answer.
        case inputWhileAnswering
        /// A long answer; input arrives after the close, while the client has not yet read the answers.
        case inputAfterClose

        var testDescription: String { rawValue }
    }

    private static func withServer(answerDelay: Duration, _ body: (UInt16) async throws -> Void) async throws {
        var configuration = HTTPServerConfiguration()
        configuration.listen = ListenAddress(host: "127.0.0.1", port: 0)
        configuration.maximumConnectionsPerAddress = 0
        let server = try HTTPServer(configuration: configuration, logger: ServiceHarness.logger) { request in
            try? await Task.sleep(for: answerDelay)
            return HTTPResponse(status: 200, body: request.path == "/big" ? bigBody : Array("ok".utf8))
        }
        try await server.serving { try await body(server.port) }
    }

    /// A first request for `path`, then an HTTP/0.1 request that libmicrohttpd answers with 505 and closes on.
    private static func pipelined(_ path: String, headers: Bool = true) -> String {
        "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/0.1\r\n" + (headers ? "Host: x\r\n\r\n" : "")
    }

    @Test("the libmicrohttpd in use is the one whose close path LingeringClose was checked against")
    func libraryVersion() {
        // Another version closes at once (with a warning), and this fails: re-read its
        // MHD_cleanup_connections (notification, then epoll removal, then close) before changing the version.
        #expect(LingeringClose.libraryVersion == LingeringClose.checkedLibraryVersion)
    }

    @Test("input unread at the close cuts no answer short", arguments: Case.allCases)
    func unreadInput(_ setting: Case) async throws {
        let delay: Duration = setting == .inputWhileAnswering ? .milliseconds(300) : .zero
        try await Self.withServer(answerDelay: delay) { port in
            let (stream, resetWhenProbed) = try await onOwnThread { () -> (PipeliningClient.Stream, Bool) in
                let client = try PipeliningClient(port: port)
                switch setting {
                case .inputWhileAnswering:
                    client.send(Self.pipelined("/big", headers: false))
                    Thread.sleep(forTimeInterval: 0.05)
                    client.send("Host: x\r\n\r\n")
                    Thread.sleep(forTimeInterval: 0.6)
                case .inputAfterClose:
                    client.send(Self.pipelined("/big"))
                    Thread.sleep(forTimeInterval: 0.3)
                    client.send("GET /y HTTP/1.1\r\nHost: x\r\n\r\n")
                    Thread.sleep(forTimeInterval: 0.1)
                }
                let stream = client.receiveUntilClosed(timeout: 10)
                // The client has everything: the server closes without waiting for the client's own end (or
                // for its 5 s), and a byte sent now meets a closed socket, which resets the connection: the
                // next send fails.
                Thread.sleep(forTimeInterval: 1.5)
                client.send("z")
                Thread.sleep(forTimeInterval: 0.3)
                return (stream, !client.send(Array("z".utf8)))
            }
            let (timedOut, reset, received) = (stream.timedOut, stream.endedInReset, stream.bytes.count)
            #expect(!timedOut)
            #expect(!reset, "the connection was reset after \(received) bytes")
            let answers = PipeliningClient.answers(in: stream.bytes)
            let statuses = answers.map(\.status)
            let bodyWhole = answers.first?.body == Self.bigBody
            #expect(statuses == [200, 505], "\(answers.map { ($0.status, $0.body.count) })")
            #expect(bodyWhole)
            #expect(resetWhenProbed, "the server still held the connection 1.5 s after the client had everything")
        }
        try await waitUntil("no connection lingers") { LingeringClose.shared.lingering == 0 }
    }

    /// Opens `count` connections from 127.0.0.`source` that each send a request for the long answer and an
    /// HTTP/0.1 request, and never read.
    private static func clientsThatNeverRead(port: UInt16, count: Int, source: UInt8) throws -> [PipeliningClient] {
        try (0..<count).map { _ in
            let client = try PipeliningClient(port: port, source: source)
            client.send(Self.pipelined("/big"))
            return client
        }
    }

    @Test("clients that never read hold at most 64 lingering connections, each for at most 5 s")
    func lingeringIsBounded() async throws {
        try await Self.withServer(answerDelay: .zero) { port in
            let started = ContinuousClock.now
            // 80 clients from 10 addresses, 8 from each (the most one address may have lingering).
            let clients = try await onOwnThread {
                try (2..<12).flatMap { try Self.clientsThatNeverRead(port: port, count: 8, source: UInt8($0)) }
            }
            try await waitUntil("the lingering connections fill up") {
                LingeringClose.shared.lingering == LingeringClose.capacity
            }
            // Every client has had its answers by now: the ones beyond the capacity were not kept.
            try await Task.sleep(for: .milliseconds(500))
            #expect(LingeringClose.shared.lingering == LingeringClose.capacity)
            // More clients of the kind find no room and are closed as before; the server answers others.
            let other = try await onOwnThread { () -> [Int] in
                let client = try PipeliningClient(port: port)
                client.send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return PipeliningClient.answers(in: client.receiveUntilClosed(timeout: 10).bytes).map(\.status)
            }
            #expect(other == [200])
            try await waitUntil("the lingering connections are closed", limit: .seconds(30)) {
                LingeringClose.shared.lingering == 0
            }
            let lingered = ContinuousClock.now - started
            #expect(lingered >= LingeringClose.maximumDuration - .milliseconds(500))
            // Measured from before the first client connected: the deadline plus a loaded machine's delays.
            #expect(lingered <= LingeringClose.maximumDuration + .milliseconds(2500))
            withExtendedLifetime(clients) {}
        }
    }

    @Test("one client address holds at most 8 lingering connections")
    func lingeringPerAddressIsBounded() async throws {
        try await Self.withServer(answerDelay: .zero) { port in
            let clients = try await onOwnThread { try Self.clientsThatNeverRead(port: port, count: 12, source: 20) }
            try await waitUntil("the address's lingering connections fill up") {
                LingeringClose.shared.lingering == LingeringClose.maximumPerAddress
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(LingeringClose.shared.lingering == LingeringClose.maximumPerAddress)
            // Another address still finds room.
            let other = try await onOwnThread { try Self.clientsThatNeverRead(port: port, count: 1, source: 21) }
            try await waitUntil("another address's connection lingers") {
                LingeringClose.shared.lingering == LingeringClose.maximumPerAddress + 1
            }
            withExtendedLifetime((clients, other)) {}
        }
        try await waitUntil("no connection lingers", limit: .seconds(30)) { LingeringClose.shared.lingering == 0 }
    }

    @Test("a client that keeps sending to a lingering connection is cut off after 1 MiB")
    func discardedInputIsBounded() async throws {
        try await Self.withServer(answerDelay: .zero) { port in
            let sent = try await onOwnThread { () -> Int? in
                let client = try PipeliningClient(port: port)
                client.send(Self.pipelined("/big"))
                Thread.sleep(forTimeInterval: 0.3)
                // Without the bound, the server would read for 5 s: gigabytes on loopback.
                let chunk = [UInt8](repeating: UInt8(ascii: "z"), count: 64 * 1024)
                var sent = 0
                while sent < 1024 * 1024 * 1024 {
                    guard client.send(chunk) else { return sent }
                    sent += chunk.count
                }
                return nil
            }
            let cutOff = try #require(sent, "the server read 1 GiB from a lingering connection")
            #expect(cutOff >= LingeringClose.maximumDiscardedBytes)
            // Plus what the two sides' buffers hold (a few MiB with Debian's defaults; room for larger ones).
            #expect(cutOff <= LingeringClose.maximumDiscardedBytes + 256 * 1024 * 1024)
        }
        try await waitUntil("no connection lingers") { LingeringClose.shared.lingering == 0 }
    }
}
