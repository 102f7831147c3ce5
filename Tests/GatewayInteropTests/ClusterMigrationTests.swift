import Foundation
import TestSupport
import Testing

/// Cluster mode and a domain that moves: each of two hosts has a private libvirtd with the QEMU driver (real
/// QEMU domains; the test driver keeps a world per connection, which virsh could not change under the
/// service). A domain is "migrated" as the issue describes it: defined and started on the destination, then
/// destroyed and undefined on the source. While it is on on both, it is fenced nowhere (which copy?);
/// afterwards, where it runs now.
@Suite("Cluster mode: a domain that migrates", requiresRoot, .serialized)
struct ClusterMigrationTests {
    static let uuid = "7a3c0d5e-1f2b-4c3d-9e8f-0a1b2c3d4e5f"

    static func definition(_ directory: TemporaryDirectory) throws -> String {
        let path = directory.file("mig.xml")
        try PacemakerRaceLab.domainDefinition(name: "fgmig", uuid: uuid)
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("fenced where it runs; while on on both hosts, nowhere; after the move, on its new host")
    func migrateThenFence() async throws {
        let source = try await PrivateLibvirtd(driver: .qemu)
        let destination = try await PrivateLibvirtd(driver: .qemu)
        func virsh(_ daemon: PrivateLibvirtd, _ arguments: [String]) async throws {
            let result = try await runProgram("/usr/bin/virsh", ["--connect", daemon.uri] + arguments)
            guard result.status == 0 else { throw ConditionNeverMet(description: "virsh: \(result.stderr)") }
        }
        let scratch = try TemporaryDirectory()
        let definition = try Self.definition(scratch)
        try await virsh(source, ["define", definition])
        try await virsh(source, ["start", "fgmig"])

        let lab = try await GatewayLab(guests: 3)
        let nodes = try await ClusterMembershipTests.corosyncHosts(lab)
        let servers = try await ClusterServers.start(
            lab,
            nodes: nodes,
            cluster: ClusterMembershipTests.cluster,
            worlds: [Fixtures.clusterURI, source.uri, destination.uri]
        )
        func host(of domain: String) async throws -> String? {
            try await servers.curl(0, "GET", "/domains/\(domain)").body["host"] as? String
        }
        try await waitUntil("host1 sees fgmig on host2", limit: .seconds(30)) { try await host(of: "fgmig") == "host2" }

        // The move begins: it runs on both hosts.
        try await virsh(destination, ["define", definition])
        try await virsh(destination, ["start", "fgmig"])
        try await waitUntil("host1 sees fgmig on both hosts", limit: .seconds(30)) {
            // An off asked now does nothing: which copy it would stop is a guess.
            let answer = try await servers.curl(0, "POST", "/domains/fgmig/off")
            return answer.status == 503
                && (answer.body["detail"] as? String)?.contains("runs on hosts host2 and host3") == true
        }

        // The move ends on the source: the domain is fenced where it runs now, within a second of the change.
        let clock = ContinuousClock()
        let moved = clock.now
        try await virsh(source, ["destroy", "fgmig"])
        try await virsh(source, ["undefine", "fgmig"])
        try await waitUntil("host1 places fgmig on host3", limit: .seconds(30)) {
            try await host(of: "fgmig") == "host3"
        }
        print(
            "cluster: a migration's end known on host1 \(clock.now - moved) after the source began to destroy its copy"
        )
        let off = try await servers.curl(0, "POST", "/domains/fgmig/off")
        #expect(off.status == 200, "\(off)")
        #expect((off.body["note"] as? String)?.hasPrefix("executed on host3") == true, "\(off)")
        let executed = try await servers.rows(2).filter { $0["action"] as? String == "off" }
        #expect(executed.count == 1 && executed.first?["message"] as? String == "received on host1", "\(executed)")
    }
}
