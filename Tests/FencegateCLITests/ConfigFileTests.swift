import Foundation
import TestSupport
import Testing

@Suite("Configuration file")
struct ConfigFileTests {
    /// The README's example, with the key file at a path of the test's.
    private func readmeExample(keyFile: String) throws -> String {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: "<!-- config:start -->\n```toml\n"))
        let end = try #require(readme.range(of: "```\n<!-- config:end -->"))
        return String(readme[start.upperBound..<end.lowerBound])
            .replacingOccurrences(of: "/etc/cluster/fence_xvm.key", with: keyFile)
    }

    @Test("the README's example, with every key, passes config check")
    func readmeExampleChecks() async throws {
        let fencegate = try FencegateBinary()
        let key = fencegate.directory.file("fence_xvm.key")
        #expect(try await fencegate.run(["keygen", key]).status == 0)
        let path = fencegate.directory.file("fencegate.toml")
        try readmeExample(keyFile: key).write(toFile: path, atomically: true, encoding: .utf8)
        let check = try await fencegate.run(["config", "check", path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("fence_xvm: multicast 225.0.0.12:1229 on virbr0"), "\(check.stdout)")
        #expect(check.stdout.contains("fence_virt: tcp 127.0.0.1:1229"))
        #expect(check.stdout.contains("hash sha256, auth sha256, 4096-byte key, 1 group(s)"))
    }

    @Test(
        "errors name the file and the line",
        arguments: [
            ("[http]\nlisten = \n", "2: not valid TOML"),
            ("\n[htp]\nlisten = \"x\"\n", "2: unknown table or key 'htp'"),
            ("[http]\n\nlistne = \"127.0.0.1:1\"\n", "3: unknown key 'listne' in [http]"),
            ("[http]\nthreads = 100\n", "2: http.threads must be 1 to 64"),
            ("[http]\nthreads = \"2\"\n", "2: http.threads must be a whole number"),
            ("[audit]\n\nread_retention_days = -1\n", "3: audit.read_retention_days must be 0 to 36500"),
            ("[audit]\nchange_retention_days = 36501\n", "2: audit.change_retention_days must be 0 to 36500"),
            (
                "[http]\nmax_connections = 16\nreserved_connections = 16\n",
                "3: http.reserved_connections must be less than the connections in all (--max-connections, 16)"
            ),
            ("[http]\nlisten = \"0.0.0.0:8443\"\n", "2: http.listen 0.0.0.0:8443 is not loopback: refusing plain HTTP"),
            ("[http]\ntls_cert = \"/c.pem\"\n", "2: http.tls_cert and the TLS key go together"),
            ("[gateway]\nhash = \"sha256\"\n", "1: [gateway] enables no listener"),
            ("[gateway]\nhash = \"md5\"\n[gateway.multicast]\n", "2: gateway.hash \"md5\" is not one of"),
            (
                "[gateway]\n[gateway.multicast]\naddress = \"198.18.0.1\"\n",
                "3: gateway.multicast.address \"198.18.0.1\" is not a numeric multicast address"
            ),
            (
                "[gateway]\nfence_virt_conf = \"/etc/fence_virt.conf\"\n[gateway.multicast]\n",
                "3: gateway.multicast cannot be combined with gateway.fence_virt_conf"
            ),
            ("[gateway.tcp]\n[[gateway.group]]\nip = [\"198.18.0.2\"]\n", "2: gateway.group needs ip"),
            ("[logging]\nlevel = \"loud\"\n", "2: logging.level \"loud\" is not one of"),
            // Several gateways: each error names its gateway, at its line.
            (
                "[[gateway]]\n[gateway.tcp]\n\n[[gateway]]\n[gateway.multicast]\nport = 0\n",
                "6: gateway[1].multicast.port must be 1 to 65535"
            ),
            (
                "[[gateway]]\n[gateway.tcp]\n[[gateway]]\n[gateway.tcp]\n[[gateway.group]]\nip = [\"198.18.0.2\"]\n",
                "5: gateway.group needs ip"
            ),
            ("[[gateway]]\n[gateway.tcp]\n[[gateway]]\nkey_fil = \"/k\"\n", "4: unknown key 'key_fil' in [gateway]"),
        ]
    )
    func errors(text: String, expected: String) async throws {
        let fencegate = try FencegateBinary()
        let path = fencegate.directory.file("fencegate.toml")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let check = try await fencegate.run(["config", "check", path])
        #expect(check.status == 78)
        #expect(check.stderr.hasPrefix("fencegate: error: \(path):\(expected)"), "\(check.stderr)")
    }

    @Test("several gateways: each with its listeners, key and groups; two on one address are refused")
    func severalGateways() async throws {
        let fencegate = try FencegateBinary()
        let keyA = fencegate.directory.file("a.key")
        let keyB = fencegate.directory.file("b.key")
        #expect(try await fencegate.run(["keygen", keyA]).status == 0)
        #expect(try await fencegate.run(["keygen", keyB, "--size", "512"]).status == 0)
        let path = fencegate.directory.file("fencegate.toml")
        func gateway(_ key: String, _ address: String, _ interface: String) -> String {
            """
            [[gateway]]
            key_file = "\(key)"
            [gateway.multicast]
            address = "\(address)"
            interface = "\(interface)"
            [[gateway.group]]
            ip = ["198.18.0.11"]
            domains = ["pcmk1"]

            """
        }
        try
            (gateway(keyA, "225.0.0.12", "br0") + gateway(keyA, "ff05::3:1", "br0") + gateway(keyB, "225.0.0.12", "br1"))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let check = try await fencegate.run(["config", "check", path])
        #expect(check.status == 0, "\(check.stderr)")
        for (index, listener, key) in [
            (0, "225.0.0.12:1229 on br0", 4096), (1, "ff05::3:1:1229 on br0", 4096), (2, "225.0.0.12:1229 on br1", 512),
        ] {
            #expect(
                check.stdout.contains(
                    "  gateway[\(index)]:\n    fence_xvm: multicast \(listener)\n    hash sha256, auth sha256, \(key)-byte key, 1 group(s)"
                ),
                "\(check.stdout)"
            )
        }

        // The README's example, with this test's keys.
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: "<!-- gateways:start -->\n```toml\n"))
        let end = try #require(readme.range(of: "```\n<!-- gateways:end -->"))
        try String(readme[start.upperBound..<end.lowerBound])
            .replacingOccurrences(of: "/etc/cluster/a.key", with: keyA)
            .replacingOccurrences(of: "/etc/cluster/b.key", with: keyB)
            .write(toFile: path, atomically: true, encoding: .utf8)
        let example = try await fencegate.run(["config", "check", path])
        #expect(example.status == 0, "\(example.stderr)")
        #expect(example.stdout.contains("  gateway[2]:\n    fence_xvm: multicast 225.0.0.12:1229 on virbr1"))

        // The same group, port and interface twice: a request would reach both.
        try (gateway(keyA, "225.0.0.12", "br0") + gateway(keyB, "225.0.0.12", "br0"))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let clash = try await fencegate.run(["config", "check", path])
        #expect(clash.status == 78)
        #expect(clash.stderr.contains("gateway[0] and gateway[1] would listen on the same address"), "\(clash.stderr)")
    }

    @Test("config import prints Debian's fence_virt.conf as TOML that config check accepts")
    func importDebianDefault() async throws {
        let fencegate = try FencegateBinary()
        let imported = try await fencegate.run(["config", "import", "/etc/fence_virt.conf"])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(
            imported.stdout == """
                # Fencegate configuration, converted from /etc/fence_virt.conf by `fencegate config import`.

                [hypervisor]
                uri = "qemu:///system"

                [gateway]
                key_file = "/etc/fence_virt.key"
                hash = "sha256"
                auth = "sha256"

                [gateway.multicast]
                address = "225.0.0.12"
                port = 1229
                interface = "virbr0"

                """
        )
        let key = fencegate.directory.file("key")
        #expect(try await fencegate.run(["keygen", key]).status == 0)
        let path = fencegate.directory.file("fencegate.toml")
        try imported.stdout.replacingOccurrences(of: "/etc/fence_virt.key", with: key)
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try await fencegate.run(["config", "check", path]).status == 0)
        let broken = try await fencegate.run(["config", "import", fencegate.directory.file("missing.conf")])
        #expect(broken.status == 78 && broken.stderr.contains("cannot read it"))
    }

    @Test("config import of a cpg backend: cluster mode, which config check accepts and names")
    func importCPG() async throws {
        let fencegate = try FencegateBinary()
        let conf = fencegate.directory.file("fence_virt.conf")
        let key = fencegate.directory.file("key")
        #expect(try await fencegate.run(["keygen", key]).status == 0)
        try """
        fence_virtd { listener = "multicast"; backend = "cpg"; }
        listeners { multicast { key_file = "\(key)"; interface = "virbr0"; } }
        backends { cpg { uri = "qemu:///system"; name_mode = "uuid"; } }
        """.write(toFile: conf, atomically: true, encoding: .utf8)
        let imported = try await fencegate.run(["config", "import", conf])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("[cluster]\nname = \"fencegate\"\n"), "\(imported.stdout)")
        #expect(imported.stdout.contains("backends/cpg/name_mode is ignored"), "\(imported.stdout)")
        let path = fencegate.directory.file("fencegate.toml")
        try imported.stdout.write(toFile: path, atomically: true, encoding: .utf8)
        let checked = try await fencegate.run(["config", "check", path])
        #expect(checked.status == 0 && checked.stdout.contains("cluster: fencegate (corosync CPG)"), "\(checked)")
    }

    @Test("serve --config runs from the file; options given besides override it; the gateway is set in one place")
    func serveFromFile() async throws {
        let fencegate = try FencegateBinary()
        let path = fencegate.directory.file("fencegate.toml")
        try
            "[hypervisor]\nuri = \"\(Fixtures.clusterURI)\"\n[http]\nlisten = \"127.0.0.1:0\"\n[logging]\nlevel = \"notice\"\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        // The file alone, then the file with options over it (Redfish and plain HTTP are not in the file).
        for extra in [[], ["--redfish", "--allow-plain-http", "--operation-timeout", "30"]] {
            let serve = try fencegate.start(["serve", "--config", path] + extra)
            try await waitUntil("serve reports readiness") {
                serve.stdout.contains("fencegate serving") || !serve.process.isRunning
            }
            #expect(
                serve.stdout.contains("hypervisor \(Fixtures.clusterURI) (9 domains)"),
                "\(serve.stdout)\(serve.stderr)"
            )
            #expect(serve.stdout.contains("(Redfish at /redfish/v1)") == !extra.isEmpty, "\(serve.stdout)")
            kill(serve.process.processIdentifier, SIGTERM)
            try await waitUntil("serve exits") { !serve.process.isRunning }
            #expect(serve.process.terminationStatus == 0)
        }

        // An option that makes the merged settings invalid names itself and the file's key.
        let plain = try await fencegate.run(["serve", "--config", path, "--listen", "0.0.0.0:0"])
        #expect(plain.status == 78, "\(plain.stderr)")
        #expect(
            plain.stderr.contains("--listen (http.listen in the file) 0.0.0.0:0 is not loopback"),
            "\(plain.stderr)"
        )
        // Gateway options without a listener, and a gateway set both in the file and by options, are refused.
        let noListener = try await fencegate.run(["serve", "--config", path, "--hash", "sha1"])
        #expect(noListener.status == 78 && noListener.stderr.contains("add --multicast or --tcp-listen"))
        try (try String(contentsOfFile: path, encoding: .utf8) + "[gateway]\n[gateway.tcp]\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let twice = try await fencegate.run(["serve", "--config", path, "--multicast"])
        #expect(
            twice.status == 78 && twice.stderr.contains("the configuration file sets the fence_xvm gateway"),
            "\(twice.stderr)"
        )
        let withFenceVirtConf = try await fencegate.run([
            "serve", "--fence-virt-conf", "/etc/fence_virt.conf", "--auth", "sha1",
        ])
        #expect(
            withFenceVirtConf.status == 64 && withFenceVirtConf.stderr.contains("drop --auth"),
            "\(withFenceVirtConf.stderr)"
        )
        try "[http]\nthreads = 0\n".write(toFile: path, atomically: true, encoding: .utf8)
        let invalid = try await fencegate.run(["serve", "--config", path])
        #expect(invalid.status == 78 && invalid.stderr.contains("fencegate.toml:2: http.threads"), "\(invalid.stderr)")
    }
}
