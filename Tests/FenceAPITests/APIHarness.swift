import FenceAPI
import FenceCore
import Foundation
import Store
import TestSupport

/// What curl saw.
struct CurlResult {
    let status: Int
    /// Lower-cased names.
    let headers: [String: String]
    let body: Data

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A real HTTP server on 127.0.0.1 (any free port) over a fence service on the cluster test world, with
/// three tokens: `ops` (fence, all domains), `viewer` (read), `pcmk12` (fence, pcmk1 and pcmk2 only).
struct APIHarness {
    let harness: ServiceHarness
    let server: HTTPServer
    let api: FenceHTTPAPI
    let ops: String
    let viewer: String
    let scoped: String

    static func withRunning(
        uri: String = Fixtures.clusterURI,
        server serverConfiguration: HTTPServerConfiguration = HTTPServerConfiguration(),
        busyTimeout: Duration = AuditStore.defaultBusyTimeout,
        databasePath: String? = nil,
        reserve: AuditSpaceReserve? = nil,
        redfish: Bool = false,
        service configuration: FenceService.Configuration = .init(),
        _ body: (APIHarness) async throws -> Void
    ) async throws {
        let harness = try await ServiceHarness(
            uri: uri,
            configuration: configuration,
            busyTimeout: busyTimeout,
            databasePath: databasePath,
            reserve: reserve
        )
        let tokens = AccessTokens(store: harness.store)
        let ops = try await tokens.create(name: "ops", scope: .fence, domainPatterns: []).secret
        let viewer = try await tokens.create(name: "viewer", scope: .read, domainPatterns: []).secret
        let scoped = try await tokens.create(name: "pcmk12", scope: .fence, domainPatterns: ["pcmk1", "pcmk2"]).secret
        let api = FenceHTTPAPI(service: harness.service, logger: ServiceHarness.logger, redfish: redfish)
        var configuration = serverConfiguration
        configuration.listen = ListenAddress(host: "127.0.0.1", port: 0)
        let server = try HTTPServer(
            configuration: configuration,
            logger: ServiceHarness.logger,
            isCredentialed: harness.service.credentialedClients.contains,
            connectionRefused: harness.service.metrics.connectionRefusedWithoutCredentials
        ) {
            await api.handle($0)
        }
        let running = APIHarness(harness: harness, server: server, api: api, ops: ops, viewer: viewer, scoped: scoped)
        try await server.serving { try await body(running) }
    }

    var baseURL: String { "\(server.configuration.tls == nil ? "http" : "https")://127.0.0.1:\(server.port)" }

    /// Runs curl against the server. `token` nil sends no Authorization header.
    func curl(
        _ method: String,
        _ path: String,
        token: String? = nil,
        basic: String? = nil,
        arguments: [String] = []
    ) async throws -> CurlResult {
        let directory = harness.directory
        let name = UUID().uuidString
        let bodyPath = directory.file("\(name).body")
        let headerPath = directory.file("\(name).headers")
        var command = [
            "-s", "-S", "-k", "--path-as-is", "-o", bodyPath, "-D", headerPath, "-w", "%{http_code}", "-X", method,
        ]
        if let token { command += ["-H", "Authorization: Bearer \(token)"] }
        if let basic { command += ["-u", basic] }
        command += arguments + [baseURL + path]
        let (status, output) = try await run("/usr/bin/curl", command)
        guard status == 0, let code = Int(output) else {
            throw ConditionNeverMet(description: "curl \(method) \(path) failed (exit \(status)): \(output)")
        }
        var headers: [String: String] = [:]
        for line in (try String(contentsOfFile: headerPath, encoding: .utf8)).split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces
            )
        }
        let body = (try? Data(contentsOf: URL(fileURLWithPath: bodyPath))) ?? Data()
        return CurlResult(status: code, headers: headers, body: body)
    }
}

/// Runs a program to completion; its exit status and output (stdout, then stderr).
func run(_ executable: String, _ arguments: [String]) async throws -> (Int32, String) {
    let result = try await runProgram(executable, arguments)
    return (result.status, result.stdout + result.stderr)
}
