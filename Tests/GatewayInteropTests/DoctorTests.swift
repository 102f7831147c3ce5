import Foundation
import TestSupport
import Testing

/// `fencegate doctor` in a namespace lab: the bridge standing in for virbr0 with IGMP snooping on and no
/// querier (the kernel's default for a new bridge), a fence_virtd holding the port, then a healthy set-up.
@Suite("fencegate doctor in a lab", requiresRoot, .serialized)
struct DoctorTests {
    private func doctor(_ lab: GatewayLab, _ extra: [String] = []) async throws -> ProgramResult {
        try await lab.lab.run(
            in: lab.lab.host,
            [
                FencegateBinary.url.path, "doctor", "--uri", Fixtures.clusterURI, "--database", lab.fencegate.database,
                "--listen", "127.0.0.1:8786", "--multicast", "--multicast-interface", "br0", "--key-file", lab.keyPath,
            ] + extra
        )
    }

    private func line(_ output: String, _ prefix: String) -> String? {
        output.split(separator: "\n").map(String.init).first { $0.contains(prefix) }
    }

    @Test("finds the bridge without a querier and prints the fix; OK once the querier runs")
    func querier() async throws {
        let lab = try await GatewayLab(guests: 1)
        #expect(
            try await lab.lab.run(
                in: lab.lab.host,
                ["ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier", "0"]
            ).status == 0
        )
        let broken = try await doctor(lab)
        #expect(broken.status == 1, "\(broken.stdout)\(broken.stderr)")
        let finding = try #require(line(broken.stdout, "bridge br0"), "\(broken.stdout)")
        #expect(finding.hasPrefix("FAIL  bridge br0: IGMP snooping is on and no querier runs"), "\(finding)")
        #expect(broken.stdout.contains("fix: echo 1 > /sys/class/net/br0/bridge/multicast_querier"), "\(broken.stdout)")
        #expect(line(broken.stdout, "key file")?.hasPrefix("OK") == true, "\(broken.stdout)")
        #expect(broken.stdout.contains("fingerprint "))

        #expect(
            try await lab.lab.run(
                in: lab.lab.host,
                ["ip", "link", "set", "br0", "type", "bridge", "mcast_querier", "1"]
            ).status == 0
        )
        let fixed = try await doctor(lab)
        #expect(fixed.status == 0, "\(fixed.stdout)\(fixed.stderr)")
        #expect(line(fixed.stdout, "bridge br0") == "OK    bridge br0: IGMP snooping on, querier on")
        #expect(!fixed.stdout.split(separator: "\n").contains { $0.hasPrefix("FAIL") }, "\(fixed.stdout)")
        #expect(line(fixed.stdout, "libvirt test:")?.contains("reachable, 9 domains") == true, "\(fixed.stdout)")
    }

    @Test("names a running fence_virtd holding the port, and says how to retire it")
    func fenceVirtdRunning() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFenceVirtd()
        let result = try await doctor(lab)
        try await lab.stopServer()
        #expect(result.status == 1)
        let finding = try #require(line(result.stdout, "port 1229/udp"), "\(result.stdout)")
        #expect(
            finding.hasPrefix("FAIL  port 1229/udp (fence_xvm multicast): in use by fence_virtd (pid "),
            "\(finding)"
        )
        #expect(result.stdout.contains("fix: systemctl disable --now fence_virtd"))

        try await lab.startFencegate()
        let running = try await doctor(lab)
        try await lab.stopServer()
        #expect(line(running.stdout, "port 1229/udp")?.hasPrefix("OK") == true, "\(running.stdout)")
        #expect(line(running.stdout, "port 1229/udp")?.contains("Fencegate is running") == true)
    }

    @Test("checks fence_virtd's own file: its key, bridge and port")
    func fromFenceVirtConf() async throws {
        let lab = try await GatewayLab(guests: 1)
        let configuration = try lab.writeFenceVirtConf()
        let result = try await lab.lab.run(
            in: lab.lab.host,
            [
                FencegateBinary.url.path, "doctor", "--fence-virt-conf", configuration, "--database",
                lab.fencegate.database,
            ]
        )
        #expect(line(result.stdout, "fence_virt.conf")?.hasPrefix("OK") == true, "\(result.stdout)")
        #expect(line(result.stdout, "key file \(lab.keyPath)")?.hasPrefix("OK") == true, "\(result.stdout)")
        #expect(
            line(result.stdout, "bridge br0")?.hasPrefix("OK    bridge br0: IGMP snooping off") == true,
            "\(result.stdout)"
        )
        #expect(line(result.stdout, "libvirt \(Fixtures.clusterURI)")?.hasPrefix("OK") == true, "\(result.stdout)")
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    @Test("checks a Fencegate configuration file the same way (serve --config's settings)")
    func fromConfigFile() async throws {
        let lab = try await GatewayLab(guests: 1)
        let imported = try await lab.fencegate.run(["config", "import", try lab.writeFenceVirtConf()])
        let path = lab.fencegate.directory.file("fencegate.toml")
        try imported.stdout.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try await lab.lab.run(
            in: lab.lab.host,
            [FencegateBinary.url.path, "doctor", "--config", path, "--database", lab.fencegate.database]
        )
        #expect(line(result.stdout, "configuration")?.hasPrefix("OK") == true, "\(result.stdout)")
        #expect(line(result.stdout, "key file \(lab.keyPath)")?.hasPrefix("OK") == true, "\(result.stdout)")
        #expect(line(result.stdout, "bridge br0")?.hasPrefix("OK") == true, "\(result.stdout)")
        #expect(line(result.stdout, "libvirt \(Fixtures.clusterURI)")?.hasPrefix("OK") == true, "\(result.stdout)")
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    @Test("an nftables input chain that drops by default: WARN with the rule to add; OK once it is added")
    func firewall() async throws {
        let lab = try await GatewayLab(guests: 1)
        try #require(
            FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft"),
            "install nftables (scripts/install-dependencies --tests)"
        )
        let host = lab.lab.host
        #expect(try await lab.lab.run(in: host, ["nft", "add", "table", "inet", "filter"]).status == 0)
        #expect(
            try await lab.lab.run(
                in: host,
                ["nft", "add chain inet filter input { type filter hook input priority 0; policy drop; }"]
            ).status == 0
        )
        let blocked = try await doctor(lab)
        let warning = try #require(line(blocked.stdout, "firewall"), "\(blocked.stdout)")
        #expect(
            warning.hasPrefix(
                "WARN  firewall: nftables chain inet filter input drops by default and does not accept udp 1229"
            ),
            "\(warning)"
        )
        let fix = #"nft add rule inet filter input iifname "br0" udp dport 1229 accept"#
        #expect(blocked.stdout.contains("fix: " + fix), "\(blocked.stdout)")

        #expect(try await lab.lab.run(in: host, ["nft", String(fix.dropFirst(4))]).status == 0)
        let open = try await doctor(lab)
        #expect(
            line(open.stdout, "firewall")?.hasPrefix(
                "OK    firewall: nftables chain inet filter input drops by default and accepts"
            ) == true,
            "\(open.stdout)"
        )
    }
}
