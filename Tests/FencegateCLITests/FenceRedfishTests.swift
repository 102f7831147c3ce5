import Foundation
import Store
import TestSupport
import Testing

/// The real, unchanged fence_redfish (Debian's fence-agents) against `serve --redfish` over HTTPS with a
/// self-signed certificate, on the cluster fixture.
@Suite("fence_redfish against Fencegate", .serialized)
struct FenceRedfishTests {
    static let agent = "/usr/sbin/fence_redfish"

    /// A server with HTTPS and Redfish, and tokens: `ops` (fence, every domain), `only2` (fence, pcmk2).
    private func withServer(_ body: (FencegateBinary, String, [String: String]) async throws -> Void) async throws {
        #expect(
            FileManager.default.isExecutableFile(atPath: Self.agent),
            "install fence-agents (scripts/install-dependencies --tests)"
        )
        let fencegate = try FencegateBinary()
        let (certificate, key) = (fencegate.directory.file("cert.pem"), fencegate.directory.file("key.pem"))
        let openssl = try await runProgram(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                "-subj", "/CN=127.0.0.1",
            ]
        )
        #expect(openssl.status == 0, "\(openssl.stderr)")
        var secrets: [String: String] = [:]
        for (name, domains) in [("ops", [String]()), ("only2", ["pcmk2"])] {
            let created = try await fencegate.run(
                ["token", "create", name, "--scope", "fence"]
                    + (domains.isEmpty ? [] : ["--domains", domains.joined(separator: ",")])
            )
            secrets[name] = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let server = try await RunningServer.start(
            fencegate,
            ["--uri", Fixtures.clusterURI, "--tls-cert", certificate, "--tls-key", key, "--redfish"]
        )
        let address = String(server.baseURL.dropFirst("https://".count))
        do {
            try await body(fencegate, address, secrets)
        } catch {
            try await server.stop()
            throw error
        }
        #expect(try await server.stop() == 0)
    }

    private func fenceRedfish(
        _ address: String,
        _ user: String,
        _ password: String,
        _ arguments: [String]
    ) async throws -> ProgramResult {
        try await runProgram(
            Self.agent,
            ["--ip", address, "--username", user, "--password", password, "--ssl-insecure"] + arguments
        )
    }

    private func rows(_ fencegate: FencegateBinary) async throws -> [AuditRecord] {
        let store = try await AuditStore.open(path: fencegate.database, logger: ServiceHarness.logger)
        return try await store.query(AuditQuery(limit: 1000)).records.reversed()
    }

    @Test("status, off, on, reboot, monitor and diag with --systems-uri, each audited with source redfish")
    func actions() async throws {
        try await withServer { fencegate, address, secrets in
            let system = ["--systems-uri", "/redfish/v1/Systems/pcmk1"]
            let cases: [([String], Int32, String)] = [
                (["-o", "status"], 0, "Status: ON"), (["-o", "off"], 0, "Success: Powered OFF"),
                (["-o", "status"], 2, "Status: OFF"), (["-o", "on"], 0, "Success: Powered ON"),
                (["-o", "reboot"], 0, "Success: Rebooted"), (["-o", "status"], 0, "Status: ON"),
                (["-o", "monitor"], 0, ""),
                (["-o", "diag"], 0, "Success: Rebooted"),  // the fence library words every diag so
            ]
            for (arguments, status, output) in cases {
                let result = try await fenceRedfish(address, "ops", secrets["ops"]!, system + arguments)
                #expect(result.status == status, "\(arguments): \(result.stdout)\(result.stderr)")
                #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == output, "\(arguments)")
            }
            // A reboot is off + on by the fence library, so: off, on, off, on; diag is an NMI. Every read of
            // the system (the agent's status polls) is audited too.
            let all = try await rows(fencegate)
            let performed = all.filter { $0.result == .success && $0.action != "status" }
            #expect(performed.map(\.action) == ["off", "on", "off", "on", "nmi"])
            #expect(all.filter { $0.action == "status" }.count >= cases.count)
            #expect(all.allSatisfy { $0.source == "redfish" && $0.requester == "ops" && $0.domainName == "pcmk1" })
            #expect(all.allSatisfy { $0.result == .success })
        }
    }

    @Test("without --systems-uri, discovery takes the token's only system")
    func discovery() async throws {
        try await withServer { fencegate, address, secrets in
            let off = try await fenceRedfish(address, "only2", secrets["only2"]!, ["-o", "off"])
            #expect(off.status == 0, "\(off.stdout)\(off.stderr)")
            // Discovery reads the Systems collection (a list, which shows the token only pcmk2), then the system.
            let rows = try await rows(fencegate)
            #expect(rows.first?.action == "list" && rows.first?.message == "1 domains", "\(rows)")
            let changes = rows.filter { !["list", "status"].contains($0.action) }
            #expect(changes.map(\.domainName) == ["pcmk2"] && changes.first?.action == "off")
            #expect(changes.first?.result == .success)
        }
    }

    @Test("a wrong password fails and does nothing; an out-of-scope system fails and is audited as refused")
    func refusals() async throws {
        try await withServer { fencegate, address, secrets in
            let system = ["--systems-uri", "/redfish/v1/Systems/pcmk1"]
            let wrong = try await fenceRedfish(address, "ops", secrets["only2"]!, system + ["-o", "off"])
            #expect(wrong.status != 0)
            let outside = try await fenceRedfish(address, "only2", secrets["only2"]!, system + ["-o", "off"])
            #expect(outside.status != 0)
            let rows = try await rows(fencegate)
            #expect(!rows.contains { $0.result == .success }, "something was executed: \(rows)")
            #expect(rows.count == 2 && rows.allSatisfy { $0.result == .refused && $0.source == "redfish" }, "\(rows)")
            #expect(rows.last?.requester == "only2" && rows.last?.message?.contains("outside token 'only2'") == true)
            let status = try await fenceRedfish(address, "ops", secrets["ops"]!, system + ["-o", "status"])
            #expect(status.stdout.contains("Status: ON"), "pcmk1 was fenced")
        }
    }

    @Test("--redfish without HTTPS is refused unless plain HTTP is allowed explicitly")
    func needsHTTPS() async throws {
        let fencegate = try FencegateBinary()
        let refused = try await fencegate.run([
            "serve", "--uri", Fixtures.clusterURI, "--listen", "127.0.0.1:0", "--redfish",
        ])
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("--redfish sends passwords (HTTP Basic) on every request"), "\(refused.stderr)")
        let server = try await RunningServer.start(
            fencegate,
            ["--uri", Fixtures.clusterURI, "--redfish", "--allow-plain-http"]
        )
        let root = try await runProgram("/usr/bin/curl", ["-s", server.baseURL + "/redfish/v1"])
        #expect(root.stdout.contains("\"@odata.id\":\"/redfish/v1\""), "\(root.stdout)")
        #expect(try await server.stop() == 0)
    }
}
