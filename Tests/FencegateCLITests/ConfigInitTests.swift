import Foundation
import TestSupport
import Testing

/// `fencegate config init`, used as a person would: at a real terminal (tmux), in a network namespace of the
/// test's own whose bridges it offers; and as a script would (`--yes`, no terminal).
@Suite(
    "config init",
    .enabled(if: NetworkLab.isAvailable && TerminalSession.isAvailable, "needs root, ip and tmux")
)
struct ConfigInitTests {
    /// A network namespace with the given bridges (up; `querier` for a bridge with an IGMP querier, as
    /// doctor wants), deleted when the value goes.
    final class BridgeNamespace {
        let name = "fgl-cfg-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"

        init(bridges: [(name: String, querier: Bool)]) throws {
            _ = try NetworkLab.ip(["netns", "add", name])
            do {
                _ = try NetworkLab.ip(["-n", name, "link", "set", "lo", "up"])
                for bridge in bridges {
                    _ = try NetworkLab.ip(
                        ["-n", name, "link", "add", bridge.name, "type", "bridge"]
                            + (bridge.querier ? ["mcast_querier", "1"] : [])
                    )
                    _ = try NetworkLab.ip(["-n", name, "link", "set", bridge.name, "up"])
                }
            } catch {
                _ = try? NetworkLab.ip(["netns", "del", name], ignoringFailure: true)
                throw error
            }
        }

        deinit {
            _ = try? NetworkLab.ip(["netns", "del", name], ignoringFailure: true)
        }

        /// `fencegate ARGUMENTS` in this namespace, with the test's own home and audit database.
        func command(_ fencegate: FencegateBinary, _ arguments: [String]) -> [String] {
            [
                NetworkLab.ipPath, "netns", "exec", name, "env", "-u", "FENCEGATE_URI",
                "HOME=\(fencegate.directory.path)", "FENCEGATE_DATABASE=\(fencegate.database)",
                FencegateBinary.url.path,
            ] + arguments
        }
    }

    private func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try #require(attributes[.posixPermissions] as? Int)
    }

    @Test("at a terminal: bridges offered virbr0 first, Enter takes defaults, wrong answers are asked again")
    func interactive() async throws {
        let fencegate = try FencegateBinary()
        let namespace = try BridgeNamespace(bridges: [("br-test", true), ("virbr0", false)])
        let path = fencegate.directory.file("fencegate.toml")
        let key = fencegate.directory.file("fence_xvm.key")
        let terminal = try TerminalSession(namespace.command(fencegate, ["config", "init", "--path", path]))
        defer { terminal.close() }

        try await terminal.answer(
            "libvirt URI [qemu:///system]: ",
            wrong: "http://example.com/",
            explained: "\"http\" is not a libvirt driver",
            right: "test:///default"
        )

        let offer = try await terminal.waitFor("Bridge [virbr0]: ")
        #expect(offer.contains("Bridges on this host: virbr0, br-test"), "\(offer)")
        try terminal.answer("br-test")

        try await terminal.answer(
            "Multicast address [225.0.0.12]: ",
            wrong: "10.0.0.1",
            explained: "\"10.0.0.1\" is not a numeric multicast address",
            right: ""
        )
        try await terminal.waitFor("Multicast port [1229]: ")
        try terminal.answer("")

        try await terminal.waitFor("HTTP API address [127.0.0.1:8786]: ")
        try terminal.answer("")

        try await terminal.answer(
            "Key file [/etc/cluster/fence_xvm.key]: ",
            wrong: "/nonexistent-fgl-cfg/fence_xvm.key",
            explained: "the directory /nonexistent-fgl-cfg does not exist",
            right: key
        )

        let status = try await terminal.exitStatus()
        let screen = try terminal.screen()
        #expect(status == 0, "\(screen)")
        #expect(screen.contains("wrote a new key to \(key) (4096 random bytes, mode 0600)"), "\(screen)")
        #expect(screen.contains("wrote \(path) (mode 0600)"), "\(screen)")
        // The doctor's findings on the file written, in this namespace.
        #expect(screen.contains("OK    configuration: \(path) is valid"), "\(screen)")
        #expect(screen.contains("OK    bridge br-test: IGMP snooping on, querier on"), "\(screen)")
        #expect(screen.contains("OK    libvirt test:///default"), "\(screen)")
        #expect(screen.contains("0 FAIL"), "\(screen)")

        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("uri = \"test:///default\""))
        #expect(text.contains("# Run it: fencegate serve --config \(path)\n"))
        #expect(text.contains("interface = \"br-test\""))
        #expect(text.contains("address = \"225.0.0.12\""))
        #expect(text.contains("port = 1229"))
        #expect(text.contains("listen = \"127.0.0.1:8786\""))
        #expect(text.contains("key_file = \"\(key)\""))
        #expect(try mode(path) == 0o600)
        #expect(try mode(key) == 0o600)
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent-fgl-cfg"))

        let check = try await fencegate.run(["config", "check", path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("fence_xvm: multicast 225.0.0.12:1229 on br-test"), "\(check.stdout)")
        #expect(check.stdout.contains("hypervisor: test:///default"), "\(check.stdout)")
    }

    @Test("at a terminal without bridges: says so, and takes a typed name")
    func noBridges() async throws {
        let fencegate = try FencegateBinary()
        let namespace = try BridgeNamespace(bridges: [])
        let path = fencegate.directory.file("fencegate.toml")
        let key = fencegate.directory.file("fence_xvm.key")
        let arguments = ["config", "init", "--path", path, "--uri", "test:///default", "--key-file", key]
        let terminal = try TerminalSession(namespace.command(fencegate, arguments))
        defer { terminal.close() }

        let offer = try await terminal.waitFor("Bridge [none]: ")
        #expect(offer.contains("No bridge was found on this host"), "\(offer)")
        #expect(!offer.contains("libvirt URI"), "--uri answers its question: \(offer)")
        try await terminal.answer(
            "Bridge [none]: ",
            wrong: "bad/name",
            explained: "\"bad/name\" is not an interface name",
            right: "br-later"
        )
        for prompt in ["Multicast address [225.0.0.12]: ", "Multicast port [1229]: "] {
            try await terminal.waitFor(prompt)
            try terminal.answer("")
        }
        // Off loopback, plain HTTP is refused unless said yes to; no: the address is asked again.
        try await terminal.waitFor("HTTP API address [127.0.0.1:8786]: ")
        try terminal.answer("0.0.0.0:8443")
        try await terminal.waitFor("TLS certificate (PEM) for HTTPS on 0.0.0.0:8443 [none]: ")
        try terminal.answer("")
        try await terminal.waitFor("Bearer tokens would cross the network in clear text [no]: ")
        try terminal.answer("")
        try await terminal.waitFor("HTTP API address [127.0.0.1:8786]: ", count: 2)
        try terminal.answer("")

        // The bridge does not exist (yet): the file is written and the doctor says what to do.
        let status = try await terminal.exitStatus()
        let screen = try terminal.screen()
        #expect(status == 1, "\(screen)")
        #expect(screen.contains("FAIL  interface br-later: does not exist on this host"), "\(screen)")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("interface = \"br-later\""))
        #expect(text.contains("listen = \"127.0.0.1:8786\""))
        #expect(try await fencegate.run(["config", "check", path]).status == 0)
    }

    @Test("--yes takes every default without a terminal; the file passes config check")
    func yes() async throws {
        let fencegate = try FencegateBinary()
        let namespace = try BridgeNamespace(bridges: [("virbr0", true)])
        let path = fencegate.directory.file("fencegate.toml")
        let key = fencegate.directory.file("fence_xvm.key")
        let arguments = ["config", "init", "--yes", "--path", path, "--uri", "test:///default", "--key-file", key]
        let command = namespace.command(fencegate, arguments)
        let result = try await runProgram(command[0], Array(command.dropFirst()))
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(!result.stdout.contains("]: "), "no question is asked: \(result.stdout)")
        #expect(result.stdout.contains("OK    bridge virbr0"), "\(result.stdout)")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("interface = \"virbr0\""))
        #expect(text.contains("address = \"225.0.0.12\""))
        #expect(try mode(path) == 0o600)
        let check = try await fencegate.run(["config", "check", path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("fence_xvm: multicast 225.0.0.12:1229 on virbr0"), "\(check.stdout)")
    }

    @Test("off loopback by options: HTTPS with a certificate; without one (and no --allow-plain-http), refused")
    func offLoopback() async throws {
        let fencegate = try FencegateBinary()
        let namespace = try BridgeNamespace(bridges: [])
        let path = fencegate.directory.file("fencegate.toml")
        let (certificate, tlsKey) = (fencegate.directory.file("cert.pem"), fencegate.directory.file("key.pem"))
        let base = [
            "config", "init", "--yes", "--path", path, "--uri", "test:///default", "--key-file",
            fencegate.directory.file("fence_xvm.key"), "--listen", "0.0.0.0:8443",
        ]

        let refused = try await fencegate.run(base)
        #expect(refused.status == 64)
        #expect(
            refused.stderr.contains("--listen 0.0.0.0:8443 is not loopback: give --tls-cert and --tls-key"),
            "\(refused.stderr)"
        )
        #expect(!FileManager.default.fileExists(atPath: path))

        let openssl = try await runProgram(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                tlsKey, "-out", certificate, "-days", "1", "-subj", "/CN=fencegate-test",
            ]
        )
        #expect(openssl.status == 0, "\(openssl.stderr)")
        let command = namespace.command(fencegate, base + ["--tls-cert", certificate, "--tls-key", tlsKey])
        let written = try await runProgram(command[0], Array(command.dropFirst()))
        #expect(written.status == 0, "\(written.stdout)\(written.stderr)")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("listen = \"0.0.0.0:8443\""))
        #expect(text.contains("tls_cert = \"\(certificate)\"\ntls_key = \"\(tlsKey)\"\nallow_plain_http = false"))
        let check = try await fencegate.run(["config", "check", path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("HTTP API: https://0.0.0.0:8443"), "\(check.stdout)")
    }

    @Test("without a terminal and without --yes: refuses at once, writes nothing")
    func noTerminal() async throws {
        let fencegate = try FencegateBinary()
        let path = fencegate.directory.file("fencegate.toml")
        let key = fencegate.directory.file("fence_xvm.key")
        let result = try await fencegate.run(["config", "init", "--path", path, "--key-file", key])
        #expect(result.status == 64)
        #expect(result.stderr.contains("standard input is not a terminal"), "\(result.stderr)")
        #expect(result.stderr.contains("--yes"))
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(!FileManager.default.fileExists(atPath: key))
    }

    @Test("an existing file is kept unless --force; a bad option is refused")
    func existingFile() async throws {
        let fencegate = try FencegateBinary()
        let namespace = try BridgeNamespace(bridges: [])
        let path = fencegate.directory.file("fencegate.toml")
        let key = fencegate.directory.file("fence_xvm.key")
        try "# mine\n".write(toFile: path, atomically: true, encoding: .utf8)
        let base = ["config", "init", "--yes", "--path", path, "--key-file", key]

        let refused = try await fencegate.run(base + ["--uri", "test:///default"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("\(path) already exists; pass --force to replace it"), "\(refused.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "# mine\n")
        #expect(!FileManager.default.fileExists(atPath: key), "nothing is created before the file can be written")

        let badURI = try await fencegate.run(base + ["--force", "--uri", "http://x/"])
        #expect(badURI.status == 64)
        #expect(badURI.stderr.contains("--uri \"http\" is not a libvirt driver"), "\(badURI.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "# mine\n")

        let command = namespace.command(fencegate, base + ["--force", "--uri", "test:///default"])
        let replaced = try await runProgram(command[0], Array(command.dropFirst()))
        #expect(replaced.status == 0, "\(replaced.stdout)\(replaced.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("[gateway.multicast]"))
        #expect(try mode(path) == 0o600)
        #expect(try await fencegate.run(["config", "check", path]).status == 0)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fencegate.directory.path)
            .filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}

extension TerminalSession {
    /// Waits for `prompt`, answers `wrong`, waits for `explained` and the same prompt again, answers `right`.
    fileprivate func answer(_ prompt: String, wrong: String, explained: String, right: String) async throws {
        try await waitFor(prompt)
        try answer(wrong)
        try await waitFor(explained)
        try await waitFor(prompt, count: 2)
        try answer(right)
    }
}
