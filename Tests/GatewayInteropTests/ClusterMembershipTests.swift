import Foundation
import Store
import TestSupport
import Testing

/// Cluster mode, joining: three hosts, each with a real corosync (knet) and `fencegate serve --cluster`, in
/// namespaces of the lab. Members introduce themselves; one holding another gateway key, or speaking another
/// protocol version (`fencegate-bench cluster-hello`), is refused on both sides; a member whose corosync
/// restarts rejoins by itself, and one whose keys are reloaded is judged again.
@Suite("Cluster membership over corosync CPG", requiresRoot, .serialized)
struct ClusterMembershipTests {
    /// The name a fence_virt.conf with `backend = "cpg"` joins, so that a host can use one.
    static let cluster = "fencegate"

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
        // A fence fails at once, saying why, and is audited.
        let token = try await lab.fencegate.run([
            "token", "create", "ops", "--scope", "fence", "--database", lab.fencegate.database,
        ]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let output = (try? String(contentsOfFile: lab.fencegate.directory.file("serve.out"), encoding: .utf8)) ?? ""
        let address =
            output.split(separator: " ").first { $0.hasPrefix("http://") }
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ":")) } ?? "-"
        let clock = ContinuousClock()
        let started = clock.now
        let fence = try await lab.lab.run(
            in: lab.lab.host,
            ["curl", "-s", "-X", "POST", "-H", "Authorization: Bearer \(token)", address + "/domains/test/off"]
        )
        #expect(clock.now - started < .seconds(2), "fails fast")
        #expect(
            fence.stdout.contains("cluster-unavailable") && fence.stdout.contains("corosync unreachable"),
            "\(fence.stdout)"
        )
        let rows = try await lab.rows()
        #expect(rows.last?.action == "off" && rows.last?.errorCode == "cluster_unavailable", "\(rows)")
        kill(server.processIdentifier, SIGTERM)
        try await waitUntil("serve exits") { !server.isRunning }
        #expect(server.terminationStatus == 0, "\(lab.serverLog)")
    }

    @Test("each host knows the others' domains and a change of one (GET /cluster); quorum lost and regained")
    func domainLocations() async throws {
        let lab = try await GatewayLab(guests: 3)
        let nodes = try await Self.corosyncHosts(lab)
        let servers = try await ClusterServers.start(lab, nodes: nodes, cluster: Self.cluster)
        func curl(_ index: Int, _ method: String, _ path: String) async throws -> [String: Any] {
            try await servers.curl(index, method, path).body
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
                "curl", "-s", "-H", "Authorization: Bearer \(servers.tokens[index])",
                try servers.address(index) + "/metrics",
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
        let health = try await nodes[2].run(["curl", "-s", try servers.address(2) + "/healthz"]).stdout
        #expect(health.contains("\"cluster\":\"not-quorate\"") && health.contains("\"status\":\"ok\""), "\(health)")
        // Partitioned: neither side takes the other's domains for off, in either direction; the minority
        // cannot confirm the others down.
        try await waitUntil("host1 and host3 see each other leave", limit: .seconds(30)) {
            servers.log(0).contains("host left the cluster") && servers.log(2).contains("host left the cluster")
        }
        let fromMajority = try await servers.curl(0, "POST", "/domains/node3/off")
        #expect(fromMajority.status == 503, "\(fromMajority)")
        #expect(
            (fromMajority.body["detail"] as? String)?.contains("host3 left the cluster and is not confirmed down")
                == true
        )
        let fromMinority = try await servers.curl(2, "POST", "/domains/pcmk1/off")
        #expect(fromMinority.status == 503, "\(fromMinority)")
        #expect(
            (fromMinority.body["detail"] as? String)?.contains("host1 left the cluster and is not confirmed down")
                == true
        )
        let minorityConfirms = try await nodes[2].run([
            FencegateBinary.url.path, "cluster", "confirm-down", "host1", "--cluster", Self.cluster, "--key-file",
            lab.keyPath,
        ])
        #expect(minorityConfirms.status == 1 && minorityConfirms.stderr.contains("not quorate"), "\(minorityConfirms)")
        #expect(try await nodes[2].run(["ip", "link", "set", "eth0", "up"]).status == 0)
        try await waitUntil("host3 is quorate again", limit: .seconds(60)) { try await quorate(2) == true }

        // Whole again: domains on two other hosts fenced at once from host1, each where it runs.
        try await waitUntil("host1 places node1 again", limit: .seconds(30)) {
            try await servers.curl(0, "GET", "/domains/node1").body["host"] as? String == "host3"
        }
        async let onHost3 = servers.curl(0, "POST", "/domains/node1/off")
        async let onHost2 = servers.curl(0, "POST", "/domains/web1/off")
        let (first, second) = try await (onHost3, onHost2)
        #expect(
            first.status == 200 && (first.body["note"] as? String)?.hasPrefix("executed on host3") == true,
            "\(first)"
        )
        #expect(
            second.status == 200 && (second.body["note"] as? String)?.hasPrefix("executed on host2") == true,
            "\(second)"
        )

        // The cluster view is not audited; the fences are (the refused one too).
        let actions = try await servers.rows(1).compactMap { $0["action"] as? String }
        #expect(actions == ["off", "off"], "\(actions)")
        // host1 was asked GET /cluster, /metrics and /healthz (none audited), and three offs.
        let host1 = try await servers.rows(0)
        #expect(
            host1.compactMap { $0["action"] as? String }.filter { $0 != "status" } == ["off", "off", "off"],
            "\(host1)"
        )
        #expect(host1.contains { $0["error_code"] as? String == "cluster_unavailable" })
    }

    @Test("any host fences any domain, executed once where it is; fence_xvm heard by every host: one call back")
    func forwarding() async throws {
        let lab = try await GatewayLab(guests: 3)
        let nodes = try await Self.corosyncHosts(lab)
        let servers = try await ClusterServers.start(lab, nodes: nodes, cluster: Self.cluster)
        try await waitUntil("host1 resolves host2's and host3's domains", limit: .seconds(30)) {
            let db1 = try await servers.curl(0, "GET", "/domains/Db1").status
            let node3 = try await servers.curl(0, "GET", "/domains/node3").status
            return db1 == 200 && node3 == 200
        }

        // HTTP on host1, domain on host2: executed on host2, answered by host1; both audit it.
        let off = try await servers.curl(0, "POST", "/domains/Db1/off")
        #expect(off.status == 200 && off.body["result"] as? String == "success", "\(off)")
        #expect((off.body["note"] as? String)?.hasPrefix("executed on host2 (its operation ") == true, "\(off)")
        let executed = try await servers.rows(1).filter { $0["action"] as? String == "off" }
        #expect(executed.count == 1, "\(executed)")
        #expect(executed.first?["message"] as? String == "received on host1", "\(executed)")
        #expect(executed.first?["requester"] as? String == "ops" && executed.first?["domain_name"] as? String == "Db1")
        let received = try await servers.rows(0).filter { $0["action"] as? String == "off" }
        #expect(received.count == 1 && received.first?["result"] as? String == "success", "\(received)")
        #expect(received.first?["power"] as? String == "off", "\(received)")
        try await waitUntil("host1 sees Db1 off") {
            let domain = try await servers.curl(0, "GET", "/domains/Db1").body
            return domain["state"] as? String == "shut-off"
        }

        // GET /domains shows each domain's host; the metrics count the request on both sides.
        let listed = try await servers.curl(0, "GET", "/domains").body["domains"] as? [[String: Any]] ?? []
        let db1 = listed.first { $0["name"] as? String == "Db1" }
        #expect(db1?["host"] as? String == "host2" && db1?["host_left"] as? Bool == false, "\(listed)")
        #expect(listed.first { $0["name"] as? String == "pcmk1" }?["host"] as? String == "host1")
        func metrics(_ index: Int) async throws -> String {
            try await nodes[index].run([
                "curl", "-s", "-H", "Authorization: Bearer \(servers.tokens[index])",
                try servers.address(index) + "/metrics",
            ]).stdout
        }
        #expect(try await metrics(0).contains("fencegate_cluster_forwarded_total{result=\"success\"} 1"))
        #expect(try await metrics(0).contains("fencegate_cluster_forwarded_duration_seconds_count"))
        #expect(try await metrics(1).contains("fencegate_cluster_executed_total{result=\"success\"} 1"))
        #expect(try await metrics(0).contains("fencegate_operations_in_flight 0"))

        // An unknown domain is unknown everywhere.
        #expect(try await servers.curl(0, "POST", "/domains/nosuch/off").status == 404)

        // fence_xvm in the bridge's namespace: every host hears its multicast; exactly one calls back, the
        // domain's host executes once.
        let fenced = try await lab.lab.run(
            in: lab.lab.host,
            ["/usr/sbin/fence_xvm", "-k", lab.keyPath, "-t", "10", "-o", "off", "-H", "node3"]
        )
        #expect(fenced.status == 0, "\(fenced.stderr)")
        var node3Rows: [[String: Any]] = []
        for index in 0..<3 {
            node3Rows += try await servers.rows(index).filter {
                $0["domain_name"] as? String == "node3" && $0["action"] as? String == "off"
            }
        }
        let executions = node3Rows.filter { !(($0["message"] as? String)?.hasPrefix("executed on") ?? false) }
        let answers = node3Rows.filter { !(($0["message"] as? String)?.hasPrefix("received on") ?? false) }
        // Every host heard it; the two that lost the claim did not call back (a second call back would be
        // refused or fail its challenge once the client has its answer).
        try await waitUntil("two hosts leave the call back to another") {
            (0..<3).filter { servers.log($0).contains("called back by another host of the cluster") }.count == 2
        }
        try await Task.sleep(for: .seconds(1))
        #expect((0..<3).allSatisfy { !servers.log($0).contains("fence_xvm request not answered") })
        #expect(executions.count == 1, "\(node3Rows)")
        #expect(answers.count == 1, "\(node3Rows)")
        #expect(node3Rows.allSatisfy { $0["source"] as? String == "multicast" && $0["result"] as? String == "success" })
        let status = try await lab.lab.run(
            in: lab.lab.host,
            ["/usr/sbin/fence_xvm", "-k", lab.keyPath, "-t", "10", "-o", "status", "-H", "node3"]
        )
        #expect(status.status == 2, "node3 is off: \(status.stdout) \(status.stderr)")
        // A list shows every host's domains.
        let list = try await lab.lab.run(
            in: lab.lab.host,
            ["/usr/sbin/fence_xvm", "-k", lab.keyPath, "-t", "10", "-o", "list"]
        )
        #expect(list.status == 0 && ["pcmk1", "Db1", "node3"].allSatisfy(list.stdout.contains), "\(list.stdout)")

        // Every host's audit log, merged, from any host: page by page (two rows a page), every row once.
        var merged: [String] = []
        var cursor: String?
        repeat {
            let page = try await servers.curl(
                2,
                "GET",
                "/operations?scope=cluster&limit=2" + (cursor.map { "&cursor=\($0)" } ?? "")
            )
            #expect(page.status == 200, "\(page)")
            #expect((page.body["unavailable_hosts"] as? [Any])?.isEmpty == true, "\(page)")
            merged += (page.body["operations"] as? [[String: Any]] ?? []).map {
                "\($0["host"] as? String ?? "?")#\($0["id"] as? Int ?? 0)"
            }
            cursor = page.body["next_cursor"] as? String
        } while cursor != nil && merged.count < 500
        var separate: [String] = []
        for index in 0..<3 {
            separate += try await servers.rows(index).map { "host\(index + 1)#\($0["id"] as? Int ?? 0)" }
        }
        #expect(merged.count == separate.count && Set(merged) == Set(separate), "\(merged) vs \(separate)")
        let fromCLI = try await nodes[0].run([
            FencegateBinary.url.path, "audit", "--cluster", Self.cluster, "--key-file", lab.keyPath, "--json",
            "--limit", "100",
        ])
        #expect(fromCLI.status == 0, "\(fromCLI.stderr)")
        let cliPage = (try? JSONSerialization.jsonObject(with: Data(fromCLI.stdout.utf8))) as? [String: Any]
        #expect((cliPage?["operations"] as? [Any])?.count == separate.count, "\(fromCLI.stdout)")

        // host2's Fencegate stops: its domains are not "off", and a fence of one fails, saying why.
        #expect(try await nodes[1].run(["pkill", "-TERM", "-x", "fencegate"]).status == 0)
        try await waitUntil("host1 sees host2 leave") { servers.log(0).contains("host left the cluster") }
        let orphan = try await servers.curl(0, "POST", "/domains/web1/off")
        #expect(orphan.status == 503, "\(orphan)")
        #expect(orphan.body["type"] as? String == "urn:fencegate:problem:cluster-unavailable", "\(orphan)")
        #expect(
            (orphan.body["detail"] as? String)?.contains("host2 left the cluster and is not confirmed down") == true
        )
        let withoutHost2 = try await servers.curl(0, "GET", "/operations?scope=cluster")
        let unavailable = withoutHost2.body["unavailable_hosts"] as? [[String: Any]]
        #expect(unavailable?.first?["host"] as? String == "host2", "\(withoutHost2)")
        #expect(unavailable?.first?["reason"] as? String == "it left the cluster", "\(withoutHost2)")
        let refusedRow = try await servers.rows(0).first
        #expect(
            refusedRow?["result"] as? String == "failure"
                && refusedRow?["error_code"] as? String == "cluster_unavailable"
        )

        // An operator's view, through host1's corosync: host2 is gone, not confirmed down.
        func fencegate(_ index: Int, _ arguments: [String]) async throws -> ProgramResult {
            try await nodes[index].run(
                [FencegateBinary.url.path] + arguments + ["--cluster", Self.cluster, "--key-file", lab.keyPath]
            )
        }
        let view = try await fencegate(0, ["cluster", "status"])
        #expect(view.status == 0, "\(view.stderr)")
        #expect(view.stdout.contains("quorate") && view.stdout.contains("node3"), "\(view.stdout)")
        #expect(view.stdout.contains("host host2 left the cluster; not confirmed down"), "\(view.stdout)")
        // A member cannot be confirmed down; host2 can, and then its domains count as off (an on fails).
        let member = try await fencegate(0, ["cluster", "confirm-down", "host3"])
        #expect(member.status == 1 && member.stderr.contains("host host3 is a member"), "\(member.stderr)")
        let confirmed = try await fencegate(2, ["cluster", "confirm-down", "host2"])
        #expect(confirmed.status == 0, "\(confirmed.stderr)")
        let offAfter = try await servers.curl(0, "POST", "/domains/web1/off")
        #expect(offAfter.status == 200, "\(offAfter)")
        #expect((offAfter.body["note"] as? String)?.contains("host2 left the cluster and was confirmed down") == true)
        let onAfter = try await servers.curl(0, "POST", "/domains/web1/on")
        #expect(onAfter.status == 503, "\(onAfter)")
        #expect(servers.log(0).contains("host confirmed down by an operator"))

        // host2 is back, now from fence_virtd's own file with backend = "cpg": a host like any other again;
        // its domains are fenced there.
        let conf = nodes[1].directory + "/fence_virt.conf"
        try """
        fence_virtd {
            listener = "multicast";
            backend = "cpg";
        }
        listeners { multicast { key_file = "\(lab.keyPath)"; interface = "eth0"; } }
        backends { cpg { uri = "\(ClusterServers.worlds[1])"; name_mode = "name"; } }
        """.write(toFile: conf, atomically: true, encoding: .utf8)
        _ = try nodes[1].start(
            [
                FencegateBinary.url.path, "serve", "--fence-virt-conf", conf, "--database",
                nodes[1].directory + "/audit.db", "--listen", "127.0.0.1:0",
            ],
            logName: "serve-again"
        )
        try await waitUntil("host3 fences web1 on host2 again", limit: .seconds(30)) {
            let on = try await servers.curl(2, "POST", "/domains/web1/on")
            return on.status == 200 && (on.body["note"] as? String)?.hasPrefix("executed on host2") == true
        }
    }

    @Test("fence races across hosts: a node fenced through one host cannot fence its peer through another")
    func racesAcrossHosts() async throws {
        let lab = try await GatewayLab(guests: 3)
        let nodes = try await Self.corosyncHosts(lab)
        let servers = try await ClusterServers.start(lab, nodes: nodes, cluster: Self.cluster)
        // Two cluster nodes: one on domain Db1 (on host2), one on pcmk1 (on host1); each holds a token of
        // its own, on a different host.
        let fromDb1 = try await servers.token(on: 0, from: "Db1")
        let fromPcmk1 = try await servers.token(on: 2, from: "pcmk1")
        try await waitUntil("host1 and host3 resolve both domains", limit: .seconds(30)) {
            let db1 = try await servers.curl(0, "GET", "/domains/Db1").status
            let pcmk1 = try await servers.curl(2, "GET", "/domains/pcmk1").status
            return db1 == 200 && pcmk1 == 200
        }
        // The node on Db1 fences pcmk1 through host1 (executed there); then the node on pcmk1, fenced, asks
        // host3 to fence Db1: refused by the cluster, though host3 itself saw nothing of the first fence.
        let first = try await servers.curl(0, "POST", "/domains/pcmk1/off", token: fromDb1)
        #expect(first.status == 200, "\(first)")
        let second = try await servers.curl(2, "POST", "/domains/Db1/off", token: fromPcmk1)
        #expect(second.status == 409, "\(second)")
        #expect(second.body["type"] as? String == "urn:fencegate:problem:requester-fenced", "\(second)")
        #expect((second.body["detail"] as? String)?.contains("by a request executed on host1") == true, "\(second)")
        let db1 = try await servers.curl(2, "GET", "/domains/Db1").body
        #expect(db1["state"] as? String == "running", "Db1 was not fenced: \(db1)")
        let row = try await servers.rows(2).first { $0["action"] as? String == "off" }
        #expect(row?["result"] as? String == "refused" && row?["error_code"] as? String == "requester_fenced")
    }
}
