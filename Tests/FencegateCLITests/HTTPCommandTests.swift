import Foundation
import TestSupport
import Testing

@Suite("fencegate serve and token, end to end")
struct HTTPCommandTests {
    @Test("the README's curl walk-through works as written against serve on the embedded default")
    func readmeWalkthrough() async throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: "<!-- walkthrough:start -->\n```sh\n"))
        let end = try #require(readme.range(of: "```\n<!-- walkthrough:end -->"))
        let block = String(readme[start.upperBound..<end.lowerBound])
        #expect(block.split(separator: "\n").count == 7)

        let fencegate = try FencegateBinary()
        let directory = fencegate.directory.path
        let server = try await RunningServer.start(
            fencegate,
            ["--uri", "test:///default", "--database", directory + "/fencegate-demo.db"]
        )
        // The same lines, with this test's server address and binary.
        let script =
            block
            .replacingOccurrences(of: "http://127.0.0.1:8786", with: server.baseURL)
            .replacingOccurrences(of: ".build/release/fencegate", with: FencegateBinary.url.path)
        let result = try await runProgram("/bin/bash", ["-euo", "pipefail", "-c", script], in: directory)
        try await server.stop()
        #expect(result.status == 0, "\(result.stderr)")

        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(result.stdout)")
        guard lines.count == 5 else { return }
        #expect(lines[0].contains(#""name":"test""#))
        #expect(lines[1].hasPrefix(#"{"operation_id":2,"action":"off","result":"success""#))
        #expect(lines[2].contains(#""power":"off""#))
        #expect(lines[3].contains(#""action":"on","result":"success""#))
        let page = try #require(try JSONSerialization.jsonObject(with: Data(lines[4].utf8)) as? [String: Any])
        let operations = try #require(page["operations"] as? [[String: Any]])
        #expect(operations.compactMap { $0["action"] as? String } == ["on", "status", "off", "list"])
        #expect(operations.allSatisfy { ($0["requester"] as? String)?.hasPrefix("demo-") == true })
        #expect(operations.allSatisfy { $0["client_address"] as? String == "127.0.0.1" })
    }

    @Test("token create prints the secret once; list shows no secret; revoke refuses it at once")
    func tokenLifecycle() async throws {
        let fencegate = try FencegateBinary()
        let created = try await fencegate.run(["token", "create", "ops", "--scope", "fence", "--domains", "pcmk*,db?"])
        #expect(created.status == 0, "\(created.stderr)")
        let secret = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.hasPrefix("fgt_"))
        #expect(created.stderr.contains("token 'ops' created with scope fence for domains pcmk*, db?"))

        let list = try await fencegate.run(["token", "list"])
        #expect(list.stdout.contains("ops   fence  pcmk*,db?"))
        #expect(!list.stdout.contains(secret) && !list.stdout.contains(String(secret.suffix(43))))
        let json = try #require(try await fencegate.json(["token", "list"]) as? [[String: Any]])
        #expect(json.first?["domains"] as? [String] == ["pcmk*", "db?"])

        let server = try await RunningServer.start(fencegate, ["--uri", Fixtures.clusterURI])
        func status(_ path: String) async throws -> String {
            try await runProgram(
                "/usr/bin/curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(secret)",
                    server.baseURL + path,
                ]
            ).stdout
        }
        #expect(try await status("/domains/pcmk1") == "200")
        #expect(try await status("/domains/stopped1") == "404")  // outside the token's patterns: as unknown
        let revoked = try await fencegate.run(["token", "revoke", "ops"])
        #expect(revoked.status == 0)
        #expect(try await status("/domains/pcmk1") == "401")
        // A token created by another process while the server runs works at once.
        let late = try await fencegate.run(["token", "create", "late", "--scope", "read"])
        #expect(late.status == 0, "\(late.stderr)")
        let lateSecret = late.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let lateStatus = try await runProgram(
            "/usr/bin/curl",
            [
                "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(lateSecret)",
                server.baseURL + "/domains/pcmk1",
            ]
        ).stdout
        #expect(lateStatus == "200")
        #expect(try await server.stop() == 0)

        let again = try await fencegate.run(["token", "revoke", "ops"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("no active token named 'ops'"))
        let duplicate = try await fencegate.run(["token", "create", "ops"])
        #expect(duplicate.status == 1)
        #expect(duplicate.stderr.contains("exists already"))
        #expect(try await fencegate.run(["token", "create", "bad name"]).status == 1)
        #expect(try await fencegate.run(["token", "create", "x", "--domains", "[a]"]).status == 1)
        #expect(try await fencegate.run(["token", "create", "x", "--scope", "admin"]).status == 64)
    }

    @Test(
        "serve refuses plain HTTP off loopback, half a TLS pair, and a bad address",
        arguments: [
            ["--listen", "0.0.0.0:0"], ["--listen", "[::]:0"], ["--tls-cert", "/nonexistent"],
            ["--listen", "localhost:80"],
            ["--operation-timeout", "0"],
        ]
    )
    func serveValidation(arguments: [String]) async throws {
        let fencegate = try FencegateBinary()
        let result = try await fencegate.run(["serve", "--uri", "test:///default"] + arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
    }

    @Test("serve on a port in use exits 1 with one clear line")
    func portInUse() async throws {
        let fencegate = try FencegateBinary()
        let first = try await RunningServer.start(fencegate, ["--uri", "test:///default"])
        let port = try #require(first.baseURL.split(separator: ":").last)
        let second = try await fencegate.run(["serve", "--uri", "test:///default", "--listen", "127.0.0.1:\(port)"])
        try await first.stop()
        #expect(second.status == 1)
        #expect(second.stderr.contains("fencegate: error: cannot listen on 127.0.0.1:\(port): Address already in use"))
    }
}
