import Foundation
import TestSupport
import Testing

@Suite("openapi.yaml is the contract", .serialized)
struct OpenAPIContractTests {
    @Test("openapi.yaml is a valid OpenAPI 3.1 document")
    func specValidates() async throws {
        let result = try await runProgram(try pythonTool("openapi-spec-validator"), [packageRoot + "/openapi.yaml"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("OK"))
    }

    @Test("schemathesis finds no failures against a live server with a fence-scope token")
    func schemathesis() async throws {
        let fencegate = try FencegateBinary()
        let created = try await fencegate.run(["token", "create", "schemathesis", "--scope", "fence"])
        #expect(created.status == 0, "\(created.stderr)")
        let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try await RunningServer.start(fencegate, ["--uri", "test:///default"])
        // schemathesis keeps a cache in its working directory; keep it out of the checkout.
        let scratch = try TemporaryDirectory()
        let result = try await runProgram(
            try pythonTool("schemathesis"),
            [
                "run", packageRoot + "/openapi.yaml", "--url", server.baseURL, "--header",
                "Authorization: Bearer \(token)",
                "--checks", "all", "--max-examples", "100", "--no-color", "--request-timeout", "20",
            ],
            in: scratch.path,
            environment: ProcessInfo.processInfo.environment.merging(["SCHEMATHESIS_HOOKS": ""]) { $1 }
        )
        let status = try await server.stop()
        #expect(result.status == 0, "schemathesis failed:\n\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("passed"), "\(result.stdout)")
        #expect(!result.stdout.contains("unique failure"), "\(result.stdout)")
        #expect(status == 0, "serve exited \(status): \(server.serve.stderr)")
        #expect(!server.serve.stderr.contains("unexpected error"), "\(server.serve.stderr)")
    }
}
