import FenceAPI
import Foundation
import TestSupport
import Testing

/// Where handlers run: on libmicrohttpd's thread until they first wait; then the connection is suspended and
/// resumed with the answer.
@Suite("HTTP server: handlers start on libmicrohttpd's thread")
struct HTTPDispatchTests {
    /// The name of the thread running now, as the kernel knows it.
    private static func threadName() -> String {
        let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        return name.trimmingCharacters(in: .newlines)
    }

    private static func withServer(_ body: (UInt16) async throws -> Void) async throws {
        var configuration = HTTPServerConfiguration()
        configuration.listen = ListenAddress(host: "127.0.0.1", port: 0)
        let server = try HTTPServer(configuration: configuration, logger: ServiceHarness.logger) { request in
            let started = threadName()
            if request.path == "/waits" { await Task.yield() }
            // 200 when the handler started on libmicrohttpd's thread; a handler that never waits also ends
            // there. (Where a waiting one goes on is Swift's choice: usually its pool.)
            let ended = threadName()
            let inline = started.hasPrefix("MHD") && (request.path == "/waits" || ended == started)
            return HTTPResponse(status: inline ? 200 : 500, body: Array("\(started) \(ended)".utf8))
        }
        try await server.serving { try await body(server.port) }
    }

    @Test("a handler that never waits is answered on libmicrohttpd's thread, with no hop")
    func answeredInline() async throws {
        try await Self.withServer { port in
            let statuses = try await HTTPLoad.run(port: port, path: "/inline", connections: 2, requests: 200)
            #expect(statuses == [200: 200])
        }
    }

    @Test("a handler that waits gives the thread back and its answer resumes the connection, however the two race")
    func answeredAfterWaiting() async throws {
        try await Self.withServer { port in
            // Task.yield lets the pool finish the handler before or after libmicrohttpd's thread suspends the
            // connection: both orders happen over these requests, and each must be answered once.
            let statuses = try await HTTPLoad.run(
                port: port,
                path: "/waits",
                connections: 4,
                requests: 4000,
                answerTimeout: .seconds(10)
            )
            #expect(statuses == [200: 4000])
        }
    }
}
