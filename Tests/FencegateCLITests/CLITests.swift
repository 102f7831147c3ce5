import Foundation
import TestSupport
import Testing

private let cluster = Fixtures.clusterURI

@Suite("The fencegate command line")
struct CLITests {
    @Test("reboot on the embedded test driver prints the result, and audit shows the row")
    func rebootThenAudit() async throws {
        let fencegate = try FencegateBinary()
        let reboot = try await fencegate.run(["reboot", "test", "--uri", "test:///default"])
        #expect(reboot.status == 0, "\(reboot.stderr)")
        #expect(reboot.stdout.hasPrefix("test: on [operation 1, "))
        #expect(reboot.stderr.isEmpty)

        let audit = try await fencegate.run(["audit"])
        #expect(audit.status == 0)
        let lines = audit.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].hasPrefix("ID  REQUESTED"))
        let columns = lines[1].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        #expect(columns[0] == "1")
        #expect(columns[2] == "cli")
        #expect(columns.contains("reboot"))
        #expect(columns.contains("test"))
        #expect(columns.contains("success"))
    }

    @Test(
        "audit reads a database on a read-only filesystem; a fence there is refused",
        .enabled(if: geteuid() == 0, "needs root for a read-only bind mount")
    )
    func auditOnReadOnlyFilesystem() async throws {
        let fencegate = try FencegateBinary()
        #expect(try await fencegate.run(["off", "pcmk2", "--uri", cluster]).status == 0)
        let readOnly = fencegate.directory.file("ro")
        try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: false)
        #expect(
            try await runProgram("/bin/mount", ["--bind", "-o", "ro", fencegate.directory.path, readOnly]).status == 0
        )
        defer { unmountLazily(readOnly) }
        let database = readOnly + "/audit.db"

        let audit = try await fencegate.run(["audit", "--json", "--database", database])
        #expect(audit.status == 0, "\(audit.stderr)")
        #expect(audit.stdout.contains("\"pcmk2\""), "\(audit.stdout)")
        #expect(audit.stderr.contains("cannot be written; reading it only"), "\(audit.stderr)")

        let off = try await fencegate.run(["off", "pcmk1", "--uri", cluster, "--database", database])
        #expect(off.status != 0)
        #expect(off.stderr.contains("read-only"), "\(off.stderr)")

        // Following it there would never see a row (SQLite was told the file does not change): refused.
        let follow = try await fencegate.run(["audit", "--follow", "--format", "json-lines", "--database", database])
        #expect(follow.status != 0)
        #expect(follow.stderr.contains("opened as unchanging"), "\(follow.stderr)")
    }

    @Test("status exits 0 for on and 2 for off, like a fence agent")
    func statusExitCodes() async throws {
        let fencegate = try FencegateBinary()
        let on = try await fencegate.run(["status", "pcmk1", "--uri", cluster])
        #expect(on.status == 0)
        #expect(on.stdout.hasPrefix("pcmk1: on "))
        let off = try await fencegate.run(["status", "stopped1", "--uri", cluster])
        #expect(off.status == 2)
        #expect(off.stdout.hasPrefix("stopped1: off "))
        let byUUID = try await fencegate.json(["status", "77777777-7777-4777-8777-777777777777", "--uri", cluster])
        let object = try #require(byUUID as? [String: Any])
        #expect(object["power"] as? String == "off")
        #expect((object["domain"] as? [String: Any])?["name"] as? String == "stopped1")
        #expect(object["operation_id"] as? Int == 3)
    }

    @Test("on and off run through the service within one process's world")
    func onOff() async throws {
        let fencegate = try FencegateBinary()
        let on = try await fencegate.run(["on", "stopped1", "--uri", cluster])
        #expect(on.status == 0)
        #expect(on.stdout.hasPrefix("stopped1: on "))
        let off = try await fencegate.run(["off", "pcmk2", "--uri", cluster])
        #expect(off.status == 0)
        #expect(off.stdout.hasPrefix("pcmk2: off "))
        let again = try await fencegate.run(["off", "stopped1", "--uri", cluster])
        #expect(again.stdout.hasPrefix("stopped1: off (already off) "))
    }

    @Test(
        "errors are one line on stderr with a documented exit code",
        arguments: [
            (["status", "ghost", "--uri", cluster], Int32(4), "domain 'ghost' not found"),
            (["off", "ghost", "--uri", cluster], Int32(4), "domain 'ghost' not found"),
            (
                ["status", "test", "--uri", "qemu+unix:///system?socket=/nonexistent/libvirt-sock"], Int32(5),
                "hypervisor qemu+unix:///system?socket=/nonexistent/libvirt-sock unavailable"
            ),
            (
                ["status", "test", "--uri", "test:///default", "--database", "/proc/fencegate/audit.db"], Int32(6),
                "audit log unavailable"
            ),
        ]
    )
    func errors(arguments: [String], status: Int32, message: String) async throws {
        let fencegate = try FencegateBinary()
        let result = try await fencegate.run(arguments)
        #expect(result.status == status, "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("fencegate: error: "))
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test(
        "bad arguments exit 64 before anything runs",
        arguments: [
            ["off", "pcmk1", "--timeout", "0"],
            ["off", ""],
            ["audit", "--limit", "0"],
            ["audit", "--limit", "1001"],
            ["audit", "--cursor", "bogus"],
            ["audit", "--result", "maybe"],
            ["audit", "--since", "yesterday-ish"],
            ["keygen", "/tmp/x", "--size", "8"],
            ["frobnicate"],
        ]
    )
    func badArguments(arguments: [String]) async throws {
        let fencegate = try FencegateBinary()
        let result = try await fencegate.run(arguments + ["--uri", cluster])
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fencegate.database))
    }

    @Test("domains lists the fixture's domains, as a table and as JSON")
    func domains() async throws {
        let fencegate = try FencegateBinary()
        let table = try await fencegate.run(["domains", "--uri", cluster])
        #expect(table.status == 0)
        #expect(table.stdout.split(separator: "\n").count == 1 + Fixtures.uuids.count)
        #expect(table.stdout.contains("stopped1    77777777-7777-4777-8777-777777777777  shut-off  off    yes"))
        let list = try #require(try await fencegate.json(["domains", "--uri", cluster]) as? [[String: Any]])
        #expect(list.map { $0["name"] as? String } == Fixtures.uuids.keys.sorted())
        #expect(list.first { $0["name"] as? String == "transient1" }?["persistent"] as? Bool == false)
    }

    @Test("$FENCEGATE_URI is the default URI")
    func uriFromEnvironment() async throws {
        let fencegate = try FencegateBinary()
        let result = try await fencegate.run(["status", "pcmk6"], environment: ["FENCEGATE_URI": cluster])
        #expect(result.status == 0)
        #expect(result.stdout.hasPrefix("pcmk6: on "))
    }

    @Test("serve --help shows the default seconds as plain numbers, whatever the locale")
    func serveHelpDefaults() async throws {
        let fencegate = try FencegateBinary()
        let help = try await fencegate.run(["serve", "--help"], environment: ["LC_ALL": "de_DE.UTF-8"])
        #expect(help.status == 0)
        // Help text is wrapped; compare it with the line breaks and indentation taken out.
        let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(text.contains("before it fails as timed out (default 60)."))
        #expect(text.contains("re-opened; default 5)."))
        #expect(text.contains("0: off; default 60)."))
        #expect(text.contains("is decided first (default 5)."))
    }
}

@Suite("fencegate audit: filters and pages")
struct CLIAuditTests {
    /// Three operations: off pcmk1 (success), on stopped1 (success), status ghost (failure).
    private func populated() async throws -> FencegateBinary {
        let fencegate = try FencegateBinary()
        #expect(try await fencegate.run(["off", "pcmk1", "--uri", cluster]).status == 0)
        #expect(try await fencegate.run(["on", "stopped1", "--uri", cluster]).status == 0)
        #expect(try await fencegate.run(["status", "ghost", "--uri", cluster]).status == 4)
        return fencegate
    }

    private func operations(
        _ fencegate: FencegateBinary,
        _ arguments: [String]
    ) async throws -> ([[String: Any]], String?) {
        let page = try #require(try await fencegate.json(["audit"] + arguments) as? [String: Any])
        return (try #require(page["operations"] as? [[String: Any]]), page["next_cursor"] as? String)
    }

    @Test("filters select the matching operations")
    func filters() async throws {
        let fencegate = try await populated()
        #expect(try await operations(fencegate, []).0.map { $0["id"] as? Int } == [3, 2, 1])
        let pcmk1 = try await operations(fencegate, ["--domain", "pcmk1"]).0
        #expect(pcmk1.count == 1)
        #expect(pcmk1.first?["action"] as? String == "off")
        #expect(pcmk1.first?["domain_uuid"] as? String == Fixtures.uuids["pcmk1"])
        #expect(pcmk1.first?["requester"] as? String != nil)
        let failures = try await operations(fencegate, ["--result", "failure"]).0
        #expect(failures.map { $0["target"] as? String } == ["ghost"])
        #expect(failures.first?["error_code"] as? String == "domain_not_found")
        #expect(try await operations(fencegate, ["--action", "on"]).0.count == 1)
        #expect(try await operations(fencegate, ["--source", "cli"]).0.count == 3)
        #expect(try await operations(fencegate, ["--source", "http"]).0.isEmpty)
        #expect(try await operations(fencegate, ["--since", "1h"]).0.count == 3)
        #expect(try await operations(fencegate, ["--until", "2000-01-01"]).0.isEmpty)
        #expect(try await operations(fencegate, ["--since", "2000-01-01T00:00:00Z"]).0.count == 3)
    }

    @Test("--limit and --cursor page through every operation once")
    func pages() async throws {
        let fencegate = try await populated()
        var seen: [Int] = []
        var cursor: String?
        repeat {
            let (page, next) = try await operations(
                fencegate,
                ["--limit", "2"] + (cursor.map { ["--cursor", $0] } ?? [])
            )
            seen += page.compactMap { $0["id"] as? Int }
            cursor = next
        } while cursor != nil
        #expect(seen == [3, 2, 1])

        let table = try await fencegate.run(["audit", "--limit", "1"])
        #expect(table.stdout.contains("-- more: fencegate audit --cursor "))
    }
}

@Suite("fencegate keygen")
struct KeygenTests {
    @Test("key fingerprint prints what sha256sum prints on a guest without fencegate; a missing file fails")
    func fingerprint() async throws {
        let fencegate = try FencegateBinary()
        let key = fencegate.directory.file("key")
        #expect(try await fencegate.run(["keygen", key]).status == 0)
        let printed = try await fencegate.run(["key", "fingerprint", key])
        #expect(printed.status == 0)
        let guestSide = try await runProgram("/bin/sh", ["-c", "head -c 4096 '\(key)' | sha256sum | cut -c1-32"])
        #expect(printed.stdout == "\(guestSide.stdout.trimmingCharacters(in: .whitespacesAndNewlines))  \(key)\n")
        let missing = try await fencegate.run(["key", "fingerprint", key, fencegate.directory.file("none")])
        #expect(missing.status == 1 && missing.stdout.hasPrefix(guestSide.stdout.prefix(32)))
    }

    @Test("writes 4096 random bytes with mode 0600, and refuses to overwrite without --force")
    func keygen() async throws {
        let fencegate = try FencegateBinary()
        let path = fencegate.directory.file("fence_xvm.key")
        let first = try await fencegate.run(["keygen", path])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("wrote 4096 random bytes to \(path) (mode 0600); fingerprint "))
        let key = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(key.count == 4096)
        #expect(Set(key).count > 200)  // random, not a constant fill
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let refused = try await fencegate.run(["keygen", path])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("already exists; pass --force"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == key)

        let replaced = try await fencegate.run(["keygen", path, "--force"])
        #expect(replaced.status == 0)
        let newKey = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(newKey.count == 4096)
        #expect(newKey != key)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fencegate.directory.path)
            .filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
    }

    @Test("an unwritable location is a clear error")
    func unwritable() async throws {
        let fencegate = try FencegateBinary()
        let result = try await fencegate.run(["keygen", "/proc/fencegate.key"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("fencegate: error: cannot write key file /proc/fencegate.key"))
    }
}

@Suite("fencegate serve")
struct ServeTests {
    @Test("starts, reports readiness, and exits 0 on SIGTERM")
    func serveAndStop() async throws {
        let fencegate = try FencegateBinary()
        let server = try await RunningServer.start(
            fencegate,
            ["--uri", cluster, "--health-interval", "0.2", "--log-level", "info"]
        )
        #expect(server.serve.stdout.contains("hypervisor \(cluster) (9 domains), audit log \(fencegate.database)"))
        #expect(server.baseURL.hasPrefix("http://127.0.0.1:"))
        try await waitUntil("the first health check is logged") { server.serve.stderr.contains("hypervisor reachable") }
        #expect(try await server.stop() == 0)
        #expect(server.serve.stderr.contains("stopped"))
    }
}
