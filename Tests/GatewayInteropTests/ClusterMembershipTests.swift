import Foundation
import TestSupport
import Testing

/// Cluster mode, joining: three hosts, each with a real corosync (knet) and `fencegate serve --cluster`, in
/// namespaces of the lab. Members introduce themselves; one holding another gateway key, or speaking another
/// protocol version (`fencegate-bench cluster-hello`), is refused on both sides; a member whose corosync
/// restarts rejoins by itself, and one whose keys are reloaded is judged again.
@Suite("Cluster membership over corosync CPG", requiresRoot, .serialized)
struct ClusterMembershipTests {
    static let cluster = "fencegate-lab"

    @Test(
        "same key: accepted; another key: refused on both sides; corosync restarted: rejoins; keys reloaded: accepted"
    )
    func joinRefuseRejoin() async throws {
        let lab = try await GatewayLab(guests: 3)
        let otherKey = lab.fencegate.directory.file("other.key")
        #expect(try await lab.fencegate.run(["keygen", otherKey]).status == 0)
        let ring = lab.lab.guests.enumerated().map { (name: "host\($0.offset + 1)", address: $0.element.ipv4) }
        var nodes: [ClusterNode] = []
        for (index, guest) in lab.lab.guests.enumerated() {
            nodes.append(
                try await ClusterNode(
                    name: ring[index].name,
                    ring: ring,
                    cluster: "fglab",
                    pacemaker: false,
                    namespace: guest.namespace,
                    lab: lab.lab,
                    in: lab.fencegate.directory.path
                )
            )
        }
        for node in nodes { try await node.waitUntilQuorate() }

        var servers: [SpawnedProcess] = []
        for (index, node) in nodes.enumerated() {
            servers.append(
                try node.start(
                    [
                        FencegateBinary.url.path, "serve", "--cluster", Self.cluster, "--uri", "test:///default",
                        "--database", node.directory + "/audit.db", "--listen", "127.0.0.1:0", "--multicast",
                        "--multicast-interface", "eth0", "--key-file", index == 2 ? otherKey : lab.keyPath,
                    ],
                    logName: "serve"
                )
            )
        }
        defer { for server in servers where server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        func log(_ index: Int) -> String { nodes[index].log("serve.err", lines: 400) }
        func count(_ text: String, in index: Int) -> Int { log(index).components(separatedBy: text).count - 1 }

        // host1 and host2 accept each other and refuse host3; host3 refuses both.
        try await waitUntil("host1 and host2 accept each other, host3 refuses both", limit: .seconds(30)) {
            count("member accepted", in: 0) == 1 && count("member accepted", in: 1) == 1
                && count("member refused", in: 0) == 1 && count("member refused", in: 1) == 1
                && count("member refused", in: 2) == 2
        }
        #expect(log(0).contains("cluster.host=host2"), "\(log(0))")
        #expect(log(0).contains("holds other gateway keys"), "\(log(0))")
        #expect(count("member accepted", in: 2) == 0, "\(log(2))")

        // host2's corosync stops: host2 leaves and retries; host1 sees it leave. It comes back: host2 rejoins.
        let stopped = try await nodes[1].run(["pkill", "-TERM", "-x", "corosync"])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        try await waitUntil("host2 notices corosync is gone, host1 sees host2 leave", limit: .seconds(30)) {
            log(1).contains("left the cluster: corosync went away; rejoining") && count("member left", in: 0) >= 1
        }
        try await waitUntil("host2's corosync has exited") {
            try await nodes[1].run(["pgrep", "-x", "corosync"]).status == 1
        }
        _ = try nodes[1].start(["corosync", "-f"], logName: "corosync-again")
        try await waitUntil("host2 rejoins and is accepted again", limit: .seconds(60)) {
            count("joined the cluster", in: 1) == 2 && count("member accepted", in: 0) == 2
        }

        // host3 takes the others' key and reloads (SIGHUP): its new hello is accepted, and it accepts them.
        try FileManager.default.removeItem(atPath: otherKey)
        try FileManager.default.copyItem(atPath: lab.keyPath, toPath: otherKey)
        // (The server runs under nsenter in the node's PID namespace: signal it there.)
        #expect(try await nodes[2].run(["pkill", "-HUP", "-x", "fencegate"]).status == 0)
        try await waitUntil("host3 and the others accept each other after its reload", limit: .seconds(30)) {
            count("member accepted", in: 2) == 2 && count("cluster.host=host3", in: 0) >= 1
        }

        // A member that speaks another protocol version is refused, with the reason, by every host.
        let bench = FencegateBinary.url.deletingLastPathComponent().appendingPathComponent("fencegate-bench").path
        _ = try nodes[2].start(
            [bench, "cluster-hello", "--group", Self.cluster, "--version", "2", "--seconds", "30"],
            logName: "impostor"
        )
        try await waitUntil("every host refuses the member speaking protocol 2", limit: .seconds(30)) {
            (0..<3).allSatisfy { count("it speaks cluster protocol 2, this host 1", in: $0) == 1 }
        }
        #expect(servers.allSatisfy { $0.isRunning })
    }

    @Test("without corosync, serve --cluster keeps serving and says once that it cannot join")
    func withoutCorosync() async throws {
        let lab = try await GatewayLab(guests: 1)
        // The lab's bridge namespace runs no corosync (CPG's sockets are private to each network namespace).
        let server = try lab.lab.start(
            in: lab.lab.host,
            [
                FencegateBinary.url.path, "serve", "--cluster", Self.cluster, "--uri", "test:///default", "--database",
                lab.fencegate.database, "--listen", "127.0.0.1:0",
            ],
            stdout: lab.fencegate.directory.file("serve.out"),
            stderr: lab.fencegate.directory.file("serve.err")
        )
        try await waitUntil("serve is up and has tried to join") {
            lab.serverLog.contains("cannot join the cluster; retrying")
                && ((try? String(contentsOfFile: lab.fencegate.directory.file("serve.out"), encoding: .utf8)) ?? "")
                    .contains("fencegate serving")
        }
        try await Task.sleep(for: .seconds(2.5))
        #expect(lab.serverLog.components(separatedBy: "cannot join the cluster").count == 2, "\(lab.serverLog)")
        #expect(server.isRunning)
        kill(server.processIdentifier, SIGTERM)
        try await waitUntil("serve exits") { !server.isRunning }
        #expect(server.terminationStatus == 0, "\(lab.serverLog)")
    }
}
