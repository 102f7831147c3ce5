import Foundation
import TestSupport
import Testing

@Suite("Secrets: file modes, and tokens never logged")
struct SecretsTests {
    @Test("keygen and a new database are 0600, and so are the database's WAL files")
    func createdPrivate() async throws {
        let fencegate = try FencegateBinary()
        let key = fencegate.directory.file("fence_xvm.key")
        #expect(try await fencegate.run(["keygen", key]).status == 0)
        #expect(try await fencegate.run(["token", "create", "ops"]).status == 0)
        for path in [key, fencegate.database, fencegate.database + "-wal"]
        where FileManager.default.fileExists(atPath: path) {
            let mode = try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode == 0o600, "\(path) has mode \(String(mode, radix: 8))")
        }
    }

    @Test("a key file others may write is refused; one they may read is used with a warning naming the fix")
    func keyFileModes() async throws {
        let fencegate = try FencegateBinary()
        let key = fencegate.directory.file("fence_xvm.key")
        #expect(try await fencegate.run(["keygen", key]).status == 0)

        chmod(key, 0o666)
        let refused = try await fencegate.run([
            "serve", "--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--key-file", key,
        ])
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
        #expect(try await fencegate.run(["domains", "--uri", "test:///default"]).status == 0)

        chmod(fencegate.database, 0o664)
        let refused = try await fencegate.run(["domains", "--uri", "test:///default"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("chmod 600 \(fencegate.database)"), "\(refused.stderr)")

        chmod(fencegate.database, 0o640)
        let warned = try await fencegate.run(["domains", "--uri", "test:///default"])
        #expect(warned.status == 0, "\(warned.stderr)")
        #expect(warned.stderr.contains("readable by group or others"), "\(warned.stderr)")
    }

    @Test(
        "no token, right or wrong, bearer or Redfish Basic, appears in the log, even at trace level",
        arguments: ["text", "json"]
    )
    func tokensNeverLogged(format: String) async throws {
        let fencegate = try FencegateBinary()
        let created = try await fencegate.run(["token", "create", "ops", "--scope", "fence"])
        let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // fgt_<16 hex>_<43 base64url characters, which may include "_">
        #expect(token.count == 64, "\(token)")
        let prefix = String(token.prefix(21))
        let secret = String(token.dropFirst(21))
        // The same token id with a wrong secret, and a token that does not exist.
        let wrong = prefix + String(repeating: "A", count: 43)
        let unknown = "fgt_0123456789abcdef_" + String(repeating: "B", count: 43)

        let server = try await RunningServer.start(
            fencegate,
            [
                "--uri", "test:///default", "--log-level", "trace", "--log-format", format, "--redfish",
                "--allow-plain-http",
            ]
        )
        func curl(_ method: String, _ path: String, _ credentials: [String]) async throws {
            _ = try await runProgram(
                "/usr/bin/curl",
                ["-s", "-o", "/dev/null", "-X", method] + credentials + [server.baseURL + path]
            )
        }
        for (bearer, path, method) in [
            (token, "/domains/test", "GET"), (token, "/domains/test/off", "POST"), (wrong, "/domains/test", "GET"),
            (unknown, "/domains/test/on", "POST"), (token + "x", "/operations", "GET"),
        ] {
            try await curl(method, path, ["-H", "Authorization: Bearer \(bearer)"])
        }
        // Redfish: HTTP Basic with the token's name and the token, right and wrong, on reads and on a Reset.
        let reset = ["-H", "Content-Type: application/json", "--data", #"{"ResetType": "On"}"#]
        for (user, password) in [("ops", token), ("ops", wrong), ("nobody", token), ("ops", unknown)] {
            try await curl("GET", "/redfish/v1/Systems", ["-u", "\(user):\(password)"])
            try await curl("GET", "/redfish/v1/Systems/test", ["-u", "\(user):\(password)"])
            try await curl(
                "POST",
                "/redfish/v1/Systems/test/Actions/ComputerSystem.Reset",
                ["-u", "\(user):\(password)"] + reset
            )
        }
        try await server.stop()
        let log = server.serve.stdout + server.serve.stderr
        #expect(log.contains("audit.id"), "trace logging was on and the fences were logged: \(log)")
        #expect(log.contains("authentication failed"), "the refusals were logged (at debug level)")
        if format == "json" {
            let lines = server.serve.stderr.split(separator: "\n")
            #expect(lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil })
        }
        let basics = [("ops", token), ("ops", wrong), ("nobody", token), ("ops", unknown)].map {
            Data("\($0.0):\($0.1)".utf8).base64EncodedString()
        }
        for leaked in [secret, String(repeating: "A", count: 43), String(repeating: "B", count: 43)] + basics {
            #expect(!log.contains(leaked), "a token secret or Basic credential appears in the log")
        }
    }
}

@Suite("Secrets: who could replace the key or the audit log")
struct FileTrustTests {
    static let nobody: uid_t = 65534

    @Test("a database path that is a symbolic link is refused, dangling or not; nothing is created through it")
    func databaseSymlink() async throws {
        let fencegate = try FencegateBinary()
        let target = fencegate.directory.file("elsewhere.db")
        let link = fencegate.directory.file("link.db")
        #expect(symlink(target, link) == 0)
        let dangling = try await fencegate.run(["domains", "--uri", "test:///default", "--database", link])
        #expect(dangling.status == 6, "\(dangling.stderr)")
        #expect(dangling.stderr.contains("symbolic link"), "\(dangling.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target), "the link was followed and a database created")
        // A link to a real database is refused too.
        #expect(try await fencegate.run(["domains", "--uri", "test:///default", "--database", target]).status == 0)
        #expect(try await fencegate.run(["domains", "--uri", "test:///default", "--database", link]).status == 6)
    }

    @Test("a database or key owned by another user is refused, with the fix")
    func foreignOwner() async throws {
        let fencegate = try FencegateBinary()
        #expect(try await fencegate.run(["domains", "--uri", "test:///default"]).status == 0)
        #expect(chown(fencegate.database, Self.nobody, Self.nobody) == 0)
        let refused = try await fencegate.run(["domains", "--uri", "test:///default"])
        #expect(refused.status == 6)
        #expect(
            refused.stderr.contains("belongs to user 65534") && refused.stderr.contains("chown"),
            "\(refused.stderr)"
        )

        let key = fencegate.directory.file("fence_xvm.key")
        #expect(try await fencegate.run(["keygen", key]).status == 0)
        #expect(chown(key, Self.nobody, Self.nobody) == 0)
        let keyRefused = try await fencegate.run(["key", "fingerprint", key])
        #expect(keyRefused.status != 0)
        #expect(keyRefused.stderr.contains("belongs to user 65534"), "\(keyRefused.stderr)")
    }

    @Test("a directory that others may write (and that is not sticky) is refused on the way to the database or key")
    func writableDirectory() async throws {
        let fencegate = try FencegateBinary()
        let open = fencegate.directory.file("open")
        #expect(mkdir(open, 0o700) == 0 && chmod(open, 0o777) == 0)
        let database = open + "/audit.db"
        let refused = try await fencegate.run(["domains", "--uri", "test:///default", "--database", database])
        #expect(refused.status == 6)
        #expect(refused.stderr.contains("the directory \(open) has mode 0777"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: database))

        let key = open + "/fence_xvm.key"
        #expect(try await fencegate.run(["keygen", key]).status == 0)  // writing one there is the operator's choice
        #expect(try await fencegate.run(["key", "fingerprint", key]).stderr.contains("has mode 0777"))

        // Sticky, as /tmp: others cannot rename what is not theirs, so the key is accepted; the database is
        // not, since SQLite creates its -wal and -shm files there by name, which others could create first.
        #expect(chmod(open, 0o1777) == 0)
        #expect(try await fencegate.run(["key", "fingerprint", key]).status == 0)
        let sticky = try await fencegate.run(["domains", "--uri", "test:///default", "--database", database])
        #expect(sticky.status == 6)
        #expect(sticky.stderr.contains("the directory \(open) has mode 01777"), "\(sticky.stderr)")
        // Its own directory, private, below a sticky one: accepted.
        let own = open + "/private"
        #expect(mkdir(own, 0o700) == 0)
        #expect(
            try await fencegate.run(["domains", "--uri", "test:///default", "--database", own + "/audit.db"]).status
                == 0
        )
    }

    @Test(
        "token create --domains with no pattern in it is an error, not a token for every domain",
        arguments: ["", ",", " , "]
    )
    func noPattern(domains: String) async throws {
        let fencegate = try FencegateBinary()
        let created = try await fencegate.run(["token", "create", "ops", "--scope", "fence", "--domains", domains])
        #expect(created.status != 0)
        #expect(created.stderr.contains("no domain pattern given"), "\(created.stderr)")
        #expect(created.stdout.isEmpty)
        let listed = try JSONSerialization.jsonObject(
            with: Data(try await fencegate.run(["token", "list", "--json"]).stdout.utf8)
        )
        #expect((listed as? [Any])?.isEmpty == true, "\(listed)")
    }
}
