import Foundation
import TestSupport
import Testing

@Suite("Log output")
struct LogFormatTests {
    @Test("--log-format json: every line is one JSON object; each fence operation is logged once with its audit id")
    func jsonLines() async throws {
        let fencegate = try FencegateBinary()
        let secret = try await fencegate.run(["token", "create", "ops", "--scope", "fence"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try await RunningServer.start(
            fencegate,
            ["--uri", Fixtures.clusterURI, "--log-format", "json", "--log-level", "notice"]
        )
        var ids: [Int] = []
        for path in ["/domains/pcmk1/off", "/domains/ghost/off"] {
            let answer = try await runProgram(
                "/usr/bin/curl",
                ["-s", "-X", "POST", "-H", "Authorization: Bearer \(secret)", server.baseURL + path]
            )
            let object = try JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [String: Any]
            if let id = object?["operation_id"] as? Int { ids.append(id) }
        }
        #expect(try await server.stop() == 0)

        let lines = server.serve.stderr.split(separator: "\n").map(String.init)
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!lines.isEmpty && objects.count == lines.count, "lines that are not JSON objects: \(lines)")
        #expect(
            objects.allSatisfy {
                ($0["timestamp"] as? String)?.hasSuffix("Z") == true && $0["level"] != nil && $0["message"] != nil
            }
        )
        let succeeded = objects.filter { $0["message"] as? String == "fence operation succeeded" }
        #expect(succeeded.count == 1 && ids.count == 1)
        #expect(succeeded.first?["audit.id"] as? String == ids.first.map(String.init), "\(succeeded)")
        #expect(succeeded.first?["fence.power"] as? String == "off")
        #expect(!server.serve.stderr.contains(secret))
    }
}
