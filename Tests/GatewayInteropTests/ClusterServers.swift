import Foundation
import TestSupport

/// `fencegate serve --cluster` on each of the lab's corosync hosts, each with a world of its own, a token
/// `ops` (scope fence) and an audit log of its own; HTTP requests sent from inside each host's namespace.
struct ClusterServers {
    let lab: GatewayLab
    let nodes: [ClusterNode]
    let tokens: [String]

    /// host1 the cluster fixture (pcmk1…), host2 the identity one (Db1…), host3 the race one (node3…).
    static let worlds = [Fixtures.clusterURI, Fixtures.identityURI, Fixtures.raceURI]

    static func start(
        _ lab: GatewayLab,
        nodes: [ClusterNode],
        cluster: String,
        worlds: [String] = worlds
    ) async throws -> ClusterServers {
        var tokens: [String] = []
        for (index, node) in nodes.enumerated() {
            let database = node.directory + "/audit.db"
            let created = try await lab.fencegate.run([
                "token", "create", "ops", "--scope", "fence", "--database", database,
            ])
            guard created.status == 0 else { throw ConditionNeverMet(description: created.stderr) }
            tokens.append(created.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            _ = try node.start(
                [
                    FencegateBinary.url.path, "serve", "--cluster", cluster, "--uri", worlds[index], "--database",
                    database, "--listen", "127.0.0.1:0", "--multicast", "--multicast-interface", "eth0", "--key-file",
                    lab.keyPath, "--log-level", "debug",
                ],
                logName: "serve"
            )
        }
        let servers = ClusterServers(lab: lab, nodes: nodes, tokens: tokens)
        try await waitUntil("every host serves HTTP") { (try? (0..<nodes.count).map(servers.address)) != nil }
        return servers
    }

    /// The HTTP address host `index` printed.
    func address(_ index: Int) throws -> String {
        let line = nodes[index].log("serve.out", lines: 5)
        guard let start = line.range(of: "serving http://")?.upperBound,
            let end = line[start...].firstIndex(of: ":").flatMap({ line[$0...].firstIndex(of: " ") })
        else { throw ConditionNeverMet(description: "no address in \(line)") }
        return "http://" + line[start..<end].trimmingCharacters(in: CharacterSet(charactersIn: ":"))
    }

    /// A request to host `index`'s API with its token (or `token`): the status and the JSON body.
    func curl(
        _ index: Int,
        _ method: String,
        _ path: String,
        token: String? = nil
    ) async throws -> (status: Int, body: [String: Any]) {
        let result = try await nodes[index].run([
            "curl", "-s", "-w", "\n%{http_code}", "-X", method, "-H", "Authorization: Bearer \(token ?? tokens[index])",
            try address(index) + path,
        ])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        let body = lines.dropLast().joined(separator: "\n")
        return (status, (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:])
    }

    /// Host `index`'s audit rows, newest first.
    func rows(_ index: Int) async throws -> [[String: Any]] {
        // Read inside the host's PID namespace: from outside, the server's PID is not the one its rows
        // name, and the audit command would take its running operations for interrupted ones.
        let rows = try await nodes[index].run([
            FencegateBinary.url.path, "audit", "--database", nodes[index].directory + "/audit.db", "--json",
        ])
        let page = try JSONSerialization.jsonObject(with: Data(rows.stdout.utf8)) as? [String: Any]
        return page?["operations"] as? [[String: Any]] ?? []
    }

    /// A fence token on host `index`, held by the cluster node that runs on domain `domain` (fence races).
    func token(on index: Int, from domain: String) async throws -> String {
        let created = try await lab.fencegate.run([
            "token", "create", "node-\(domain)", "--scope", "fence", "--from", domain, "--database",
            nodes[index].directory + "/audit.db",
        ])
        guard created.status == 0 else { throw ConditionNeverMet(description: created.stderr) }
        return created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Host `index`'s server log.
    func log(_ index: Int) -> String { nodes[index].log("serve.err", lines: 400) }
}
