import Foundation
import TestSupport
import Testing

@Suite("Secrets: file modes, and tokens never logged")
struct SecretsTests {
    @Test("keygen and a new database are 0600, and so are the database's WAL files")
    func createdPrivate() async throws {
        let fencegate = try FencegateBinary()
        let key = fencegate.directory.file("fence_xvm.key")
        #expect(try fencegate.run(["keygen", key]).status == 0)
        #expect(try fencegate.run(["token", "create", "ops"]).status == 0)
        for path in [key, fencegate.database, fencegate.database + "-wal"] where FileManager.default.fileExists(atPath: path) {
            let mode = try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode == 0o600, "\(path) has mode \(String(mode, radix: 8))")
        }
    }

    @Test("a key file others may write is refused; one they may read is used with a warning naming the fix")
    func keyFileModes() async throws {
        let fencegate = try FencegateBinary()
        let key = fencegate.directory.file("fence_xvm.key")
        #expect(try fencegate.run(["keygen", key]).status == 0)

        chmod(key, 0o666)
        let refused = try fencegate.run(["serve", "--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--key-file", key])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("chmod 600 \(key)"), "\(refused.stderr)")

        chmod(key, 0o644)
        let server = try await RunningServer.start(fencegate, ["--tcp-listen", "127.0.0.1:0", "--key-file", key])
        try await server.stop()
        #expect(server.serve.stderr.contains("group or others can read it"), "\(server.serve.stderr)")
        #expect(server.serve.stderr.contains("chmod 600 \(key)"))
    }

    @Test("a database others may write is refused; one they may read is used with a warning")
    func databaseModes() async throws {
        let fencegate = try FencegateBinary()
        #expect(try fencegate.run(["domains", "--uri", "test:///default"]).status == 0)

        chmod(fencegate.database, 0o664)
        let refused = try fencegate.run(["domains", "--uri", "test:///default"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("chmod 600 \(fencegate.database)"), "\(refused.stderr)")

        chmod(fencegate.database, 0o640)
        let warned = try fencegate.run(["domains", "--uri", "test:///default"])
        #expect(warned.status == 0, "\(warned.stderr)")
        #expect(warned.stderr.contains("readable by group or others"), "\(warned.stderr)")
    }

    @Test("no token, right or wrong, appears in the log, even at trace level")
    func tokensNeverLogged() async throws {
        let fencegate = try FencegateBinary()
        let created = try fencegate.run(["token", "create", "ops", "--scope", "fence"])
        let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // fgt_<16 hex>_<43 base64url characters, which may include "_">
        #expect(token.count == 64, "\(token)")
        let prefix = String(token.prefix(21))
        let secret = String(token.dropFirst(21))
        // The same token id with a wrong secret, and a token that does not exist.
        let wrong = prefix + String(repeating: "A", count: 43)
        let unknown = "fgt_0123456789abcdef_" + String(repeating: "B", count: 43)

        let server = try await RunningServer.start(fencegate, ["--uri", "test:///default", "--log-level", "trace"])
        for (bearer, path, method) in [
            (token, "/domains/test", "GET"), (token, "/domains/test/off", "POST"), (wrong, "/domains/test", "GET"),
            (unknown, "/domains/test/on", "POST"), (token + "x", "/operations", "GET"),
        ] {
            _ = try await runProgram(
                "/usr/bin/curl", ["-s", "-o", "/dev/null", "-X", method, "-H", "Authorization: Bearer \(bearer)", server.baseURL + path])
        }
        try await server.stop()
        let log = server.serve.stdout + server.serve.stderr
        #expect(log.contains("audit.id"), "trace logging was on and the fence was logged: \(log)")
        for leaked in [secret, String(repeating: "A", count: 43), String(repeating: "B", count: 43)] {
            #expect(!log.contains(leaked), "a token secret appears in the log")
        }
    }
}
