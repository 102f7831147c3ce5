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

    /// One corosync host (`host1`…) per guest namespace of `lab`, all quorate.
    static func corosyncHosts(_ lab: GatewayLab) async throws -> [ClusterNode] {
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
        return nodes
    }

    @Test("same key accepted, other key or protocol refused both ways; corosync restart: rejoin; key reload: accepted")
    func joinRefuseRejoin() async throws {
        let lab = try await GatewayLab(guests: 3)
        let otherKey = lab.fencegate.directory.file("other.key")
        #expect(try await lab.fencegate.run(["keygen", otherKey]).status == 0)
        let nodes = try await Self.corosyncHosts(lab)

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

    @Test("each host knows the others' domains and a change of one (GET /cluster); quorum lost and regained")
    func domainLocations() async throws {
        let lab = try await GatewayLab(guests: 3)
        let nodes = try await Self.corosyncHosts(lab)
        // Each host its own world: host1 the cluster fixture, host2 the identity one, host3 the race one.
        let worlds = [Fixtures.clusterURI, Fixtures.identityURI, Fixtures.raceURI]
        var tokens: [String] = []
        for (index, node) in nodes.enumerated() {
            let database = node.directory + "/audit.db"
            let created = try await lab.fencegate.run([
                "token", "create", "ops", "--scope", "fence", "--database", database,
            ])
            #expect(created.status == 0, "\(created.stderr)")
            tokens.append(created.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            _ = try node.start(
                [
                    FencegateBinary.url.path, "serve", "--cluster", Self.cluster, "--uri", worlds[index], "--database",
                    database, "--listen", "127.0.0.1:0", "--multicast", "--multicast-interface", "eth0", "--key-file",
                    lab.keyPath,
                ],
                logName: "serve"
            )
        }
        func address(_ index: Int) throws -> String {
            let line = nodes[index].log("serve.out", lines: 5)
            guard let start = line.range(of: "serving http://")?.upperBound,
                let end = line[start...].firstIndex(of: ":").flatMap({ line[$0...].firstIndex(of: " ") })
            else { throw ConditionNeverMet(description: "no address in \(line)") }
            return "http://" + line[start..<end].trimmingCharacters(in: CharacterSet(charactersIn: ":"))
        }
        func curl(_ index: Int, _ method: String, _ path: String) async throws -> [String: Any] {
            let result = try await nodes[index].run([
                "curl", "-s", "-X", method, "-H", "Authorization: Bearer \(tokens[index])", try address(index) + path,
            ])
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        }
        func hosts(seenFrom index: Int) async throws -> [String: [String: String]] {
            let members = try await curl(index, "GET", "/cluster")["members"] as? [[String: Any]] ?? []
            var hosts: [String: [String: String]] = [:]
            for member in members {
                guard let host = member["host"] as? String else { continue }
                let domains = member["domains"] as? [[String: Any]] ?? []
                hosts[host] = Dictionary(
                    domains.compactMap { domain in
                        (domain["name"] as? String).map { ($0, domain["state"] as? String ?? "") }
                    },
                    uniquingKeysWith: { first, _ in first }
                )
            }
            return hosts
        }
        try await waitUntil("every host serves HTTP") { (try? (0..<3).map(address)) != nil }

        // Every host sees all three hosts' domains.
        let clock = ContinuousClock()
        let started = clock.now
        try await waitUntil("each host knows every host's domains", limit: .seconds(30)) {
            for index in 0..<3 {
                let seen = try await hosts(seenFrom: index)
                guard seen["host1"]?["pcmk1"] == "running", seen["host2"]?["Db1"] == "running",
                    seen["host3"]?["node3"] == "running"
                else { return false }
            }
            return true
        }
        print("cluster: every host's domains known everywhere \(clock.now - started) after the servers started")

        // host2 fences one of its domains: host1 and host3 learn it from host2's report.
        let fenced = clock.now
        let off = try await curl(1, "POST", "/domains/Db1/off")
        #expect(off["result"] as? String == "success", "\(off)")
        try await waitUntil("host1 and host3 see Db1 shut off on host2") {
            let fromHost1 = try await hosts(seenFrom: 0)["host2"]?["Db1"]
            let fromHost3 = try await hosts(seenFrom: 2)["host2"]?["Db1"]
            return fromHost1 == "shut-off" && fromHost3 == "shut-off"
        }
        print("cluster: a fence on host2 known on host1 and host3 \(clock.now - fenced) after it was asked")
        // Quorum, as votequorum says: host3 cut off loses it (CPG alone would not tell), the others keep it;
        // back on the link, host3 regains it.
        func quorate(_ index: Int) async throws -> Bool? {
            try await curl(index, "GET", "/cluster")["quorate"] as? Bool
        }
        try await waitUntil("every host is quorate") {
            let all = [try await quorate(0), try await quorate(1), try await quorate(2)]
            return all == [true, true, true]
        }
        func metrics(_ index: Int) async throws -> String {
            try await nodes[index].run([
                "curl", "-s", "-H", "Authorization: Bearer \(tokens[index])", try address(index) + "/metrics",
            ]).stdout
        }
        try await waitUntil("host1's gauges show two accepted members and quorum") {
            let text = try await metrics(0)
            return text.contains("fencegate_cluster_members{standing=\"accepted\"} 2.0")
                && text.contains("fencegate_cluster_quorate 1.0")
        }
        #expect(try await nodes[2].run(["ip", "link", "set", "eth0", "down"]).status == 0)
        try await waitUntil("host3 alone is not quorate; host1 and host2 are", limit: .seconds(30)) {
            let all = [try await quorate(0), try await quorate(1), try await quorate(2)]
            return all == [true, true, false]
        }
        #expect(nodes[2].log("serve.err", lines: 400).contains("this host's partition is not quorate"))
        try await waitUntil("host3's gauge shows no quorum") {
            try await metrics(2).contains("fencegate_cluster_quorate 0.0")
        }
        let health = try await nodes[2].run(["curl", "-s", try address(2) + "/healthz"]).stdout
        #expect(health.contains("\"cluster\":\"not-quorate\"") && health.contains("\"status\":\"ok\""), "\(health)")
        #expect(try await nodes[2].run(["ip", "link", "set", "eth0", "up"]).status == 0)
        try await waitUntil("host3 is quorate again", limit: .seconds(60)) { try await quorate(2) == true }

        // The cluster view is not audited; the fence is.
        let rows = try await lab.fencegate.run(["audit", "--database", nodes[1].directory + "/audit.db", "--json"])
        let page = try JSONSerialization.jsonObject(with: Data(rows.stdout.utf8)) as? [String: Any]
        let actions = (page?["operations"] as? [[String: Any]])?.compactMap { $0["action"] as? String }
        #expect(actions == ["off"], "\(rows.stdout)")
        // host1 was only asked GET /cluster, /metrics and /healthz: none of them is audited.
        let host1 = try await lab.fencegate.run(["audit", "--database", nodes[0].directory + "/audit.db", "--json"])
        let host1Page = try JSONSerialization.jsonObject(with: Data(host1.stdout.utf8)) as? [String: Any]
        #expect((host1Page?["operations"] as? [Any])?.isEmpty == true, "\(host1.stdout)")
    }
}
