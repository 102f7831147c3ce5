import Foundation
import TestSupport
import Testing

@testable import Store

/// `kill -9` of `fencegate serve` at random moments while fence operations run, over and over. After each
/// restart the audit log must be intact, every acknowledged operation must have its finished row, rows left
/// `started` must read `interrupted`, and no operation may have two rows.
@Suite("Crash safety: kill -9 while operations run")
struct CrashSafetyTests {
    static let kills = 100
    static let requestsPerRound = 3

    /// A test-driver world with `count` running domains named vm1…vmN.
    static func world(_ directory: TemporaryDirectory, domains count: Int) throws -> String {
        var xml = "<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>2</cores>"
        xml += "<threads>1</threads><active>2</active></cpu><memory>16777216</memory>\n"
        for index in 1...count {
            xml +=
                "<domain type=\"test\"><name>vm\(index)</name><uuid>00000000-0000-4000-8000-\(String(format: "%012d", index))</uuid>"
            xml += "<memory>262144</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>\n"
        }
        xml += "</node>\n"
        let path = directory.file("world.xml")
        try xml.write(toFile: path, atomically: true, encoding: .utf8)
        return "test://" + path
    }

    @Test("100 kills over real operations: log intact, acknowledged operations recorded, none twice, none left started")
    func killLoop() async throws {
        let fencegate = try FencegateBinary()
        let domains = Self.kills * Self.requestsPerRound
        let uri = try Self.world(fencegate.directory, domains: domains)
        let token = try await fencegate.run(["token", "create", "chaos", "--scope", "fence"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var acknowledged: [String: Int64] = [:]  // domain → operation id from a 200 answer
        var interruptedSeen = 0

        for round in 0..<Self.kills {
            let server = try await RunningServer.start(fencegate, ["--uri", uri])
            // Each request fences a domain of its own, so rows can be matched to requests one to one.
            let requests = (0..<Self.requestsPerRound).map { offset in
                let domain = "vm\(round * Self.requestsPerRound + offset + 1)"
                return (
                    domain,
                    Task {
                        try await runProgram(
                            "/usr/bin/curl",
                            [
                                "-s", "--max-time", "5", "-X", "POST", "-H", "Authorization: Bearer \(token)",
                                "\(server.baseURL)/domains/\(domain)/off",
                            ]
                        )
                    }
                )
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...40)))
            kill(server.serve.process.processIdentifier, SIGKILL)
            try await waitUntil("the killed server is gone") { !server.serve.process.isRunning }
            for (domain, request) in requests {
                let answer = try await request.value
                if let data = answer.stdout.data(using: .utf8),
                    let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                    let id = json["operation_id"] as? Int
                {
                    acknowledged[domain] = Int64(id)
                }
            }
            // The database is whole after every kill.
            let database = try Database(path: fencegate.database, access: .readOnly)
            #expect(try database.query("PRAGMA integrity_check").first?.first?.text == "ok", "round \(round)")
        }

        // One more start recovers the last round's rows; then read everything.
        let audit = try await fencegate.run(["audit", "--json", "--limit", "1000", "--uri", uri])
        #expect(audit.status == 0, "\(audit.stderr)")
        let operations = try #require(
            (try JSONSerialization.jsonObject(with: Data(audit.stdout.utf8)) as? [String: Any])?["operations"]
                as? [[String: Any]]
        )
        var rowsByDomain: [String: [[String: Any]]] = [:]
        for row in operations {
            rowsByDomain[row["domain_name"] as? String ?? row["target"] as? String ?? "?", default: []].append(row)
        }
        #expect(!operations.contains { ($0["state"] as? String) == "started" }, "a row was left started")
        for (domain, rows) in rowsByDomain {
            #expect(rows.count == 1, "\(domain) has \(rows.count) rows")
        }
        for (domain, id) in acknowledged {
            let row = rowsByDomain[domain]?.first
            #expect(row?["id"] as? Int == Int(id), "\(domain): acknowledged as operation \(id), not in the log")
            #expect(row?["result"] as? String == "success", "\(domain): acknowledged, but recorded \(row ?? [:])")
        }
        interruptedSeen = operations.filter { ($0["state"] as? String) == "interrupted" }.count
        print(
            "crash safety: \(Self.kills) kills, \(operations.count) rows, \(acknowledged.count) acknowledged, \(interruptedSeen) interrupted"
        )
        #expect(acknowledged.count > 0, "no request was ever answered: the kills came too early to test anything")
    }
}
