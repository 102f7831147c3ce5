import Foundation
import TestSupport
import Testing

/// Cluster mode, the executing host's death: a request another host placed on it ends, on the receiving host,
/// as timed out (its outcome is unknown), at once rather than at its deadline, and both the answer and the
/// audit row say why. The slow operation is real: a QEMU domain of a private libvirtd whose process is held
/// with SIGSTOP, so that libvirt's destroy waits for its SIGKILL (10 s).
@Suite("Cluster mode: the executing host dies mid-request", requiresRoot, .serialized)
struct ClusterExecutorTests {
    @Test("host1 asks, host2 executes and dies: host1 answers 504 timed out at once, audited")
    func executorDies() async throws {
        let libvirtd = try await PrivateLibvirtd(driver: .qemu)
        let name = "fgexec-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        func virsh(_ arguments: [String]) async throws {
            let result = try await runProgram("/usr/bin/virsh", ["--connect", libvirtd.uri] + arguments)
            guard result.status == 0 else { throw ConditionNeverMet(description: "virsh: \(result.stderr)") }
        }
        let scratch = try TemporaryDirectory()
        try PacemakerRaceLab.domainDefinition(name: name).write(
            toFile: scratch.file("domain.xml"),
            atomically: true,
            encoding: .utf8
        )
        try await virsh(["define", scratch.file("domain.xml")])
        try await virsh(["start", name])
        defer {
            if let pid = libvirtd.qemuPID(ofDomain: name) { kill(pid, SIGCONT) }
        }

        let lab = try await GatewayLab(guests: 2)
        let nodes = try await ClusterMembershipTests.corosyncHosts(lab)
        let servers = try await ClusterServers.start(
            lab,
            nodes: nodes,
            cluster: ClusterMembershipTests.cluster,
            worlds: [Fixtures.clusterURI, libvirtd.uri]
        )
        try await waitUntil("host1 sees the domain running on host2", limit: .seconds(30)) {
            let domain = try await servers.curl(0, "GET", "/domains/\(name)").body
            return domain["state"] as? String == "running" && domain["host"] as? String == "host2"
        }

        // QEMU held: host2's destroy waits for libvirt's SIGKILL.
        let qemu = try #require(libvirtd.qemuPID(ofDomain: name))
        kill(qemu, SIGSTOP)
        let clock = ContinuousClock()
        async let answer = servers.curl(0, "POST", "/domains/\(name)/off")
        do {
            try await waitUntil("host2 has begun the off (its intent row)") {
                try await servers.rows(1).contains {
                    $0["action"] as? String == "off" && $0["state"] as? String == "started"
                }
            }
        } catch {
            Issue.record("host2: \(try await servers.rows(1))\n\(servers.log(1))\nhost1: \(servers.log(0))")
            throw error
        }
        let killedAt = clock.now
        #expect(try await nodes[1].run(["pkill", "-KILL", "-x", "fencegate"]).status == 0)
        let (status, body) = try await answer
        let answeredAfter = clock.now - killedAt
        print("cluster: host1 answered \(answeredAfter) after host2's Fencegate was killed mid-request")
        #expect(status == 504, "\(body)")
        #expect(body["type"] as? String == "urn:fencegate:problem:timed-out", "\(body)")
        #expect(answeredAfter < .seconds(5), "answered when host2 left, not at the deadline (60 s)")
        let row = try await servers.rows(0).first { $0["action"] as? String == "off" }
        #expect(row?["result"] as? String == "timed_out", "\(String(describing: row))")
        #expect(
            (row?["message"] as? String)?.hasPrefix("on host2 (it left the cluster mid-request): ") == true,
            "\(String(describing: row))"
        )
    }
}
