import FenceCore
import Foundation
import Store
import Synchronization
import TestSupport

/// A two-node Pacemaker cluster whose nodes "run on" real QEMU domains of a private libvirtd and fence each
/// other through the unchanged fence_xvm and `fencegate serve`: the fence race of issue 13, for real.
///
/// Each round builds a fresh lab: the host namespace with its bridge and `fencegate serve` (multicast on the
/// bridge, the guests' addresses mapped to their domains with `--requester-domain`), two guest namespaces on
/// the bridge (198.18.0.11 and .12) that become `node1` and `node2` (`ClusterNode`), and the cluster's own
/// link, a veth pair between the two nodes (198.18.2.1 and .2), apart from the fencing network. Pacemaker is
/// configured with one fence_xvm device per node, each kept off the node it fences, a Dummy resource
/// `service`, and no fencing delays of any kind. Each node is tied to its domain: the moment the domain's QEMU
/// process is gone, the node loses power (`PowerCutWatcher`); until then it runs, and may fence.
///
/// A round cuts the cluster link: each node then loses the other and asks to fence it (Pacemaker's default
/// action, reboot). The domains and the libvirtd live as long as the lab, in the libvirtd's private
/// directory; their QEMU processes are killed with it.
///
/// Whether both nodes get to ask depends on the loser outliving the gap between the two requests (about 1 s
/// here), and a plain QEMU domain dies about 1.4 s after libvirt's destroy begins. `Teardown.heldUntilKill`
/// makes that margin certain with a fault injected into the real QEMU: its process is stopped (SIGSTOP) just
/// before the cut, so it cannot act on the SIGTERM with which libvirt's destroy begins, and dies of the
/// SIGKILL that libvirt sends 10 s later, like a guest whose QEMU does not die on SIGTERM (stuck in I/O, or
/// tearing down a large memory).
final class PacemakerRaceLab: @unchecked Sendable {
    static let nodeNames = ["node1", "node2"]
    static let ring = [(name: "node1", address: "198.18.2.1"), (name: "node2", address: "198.18.2.2")]

    let libvirtd: PrivateLibvirtd
    /// Node name → the name of the domain it runs on.
    let domains: [String: String]

    /// Starts a private libvirtd with the QEMU driver and defines one small QEMU (TCG) domain per node.
    init() async throws {
        libvirtd = try await PrivateLibvirtd(driver: .qemu)
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        domains = Dictionary(uniqueKeysWithValues: Self.nodeNames.map { ($0, "fgrace-\(tag)-\($0)") })
        let scratch = try TemporaryDirectory()
        for domain in domains.values.sorted() {
            let path = scratch.file(domain + ".xml")
            try Self.domainDefinition(name: domain).write(toFile: path, atomically: true, encoding: .utf8)
            try await virsh(["define", path])
        }
    }

    /// How a domain dies when libvirt destroys it.
    enum Teardown: String, Sendable, CustomStringConvertible {
        /// As QEMU does: on libvirt's SIGTERM, about 1.4 s after the destroy begins.
        case immediate = "QEMU as is"
        /// Only on libvirt's SIGKILL, 10 s after the destroy begins (the QEMU process held with SIGSTOP).
        case heldUntilKill = "QEMU held until SIGKILL"

        var description: String { rawValue }
    }

    /// The fence server on the host.
    enum Server: String, Sendable, CustomStringConvertible {
        /// `fencegate serve`, arbitration on (the default window).
        case fencegate = "Fencegate"
        /// `fencegate serve --fence-race-window 0`: as before issue 13.
        case fencegateWithoutArbitration = "Fencegate without arbitration"
        /// Debian's fence_virtd, with the same key, listener and hypervisor. It keeps no audit log: its
        /// rounds are told by the power cuts alone.
        case fenceVirtd = "fence_virtd"

        var description: String { rawValue }
    }

    /// What one round came to.
    struct Outcome: CustomStringConvertible {
        let round: Int
        let server: Server
        let teardown: Teardown
        /// Where `service` ran before the cut.
        let serviceBefore: String
        /// The off and reboot requests, in the order they were made.
        let fenceRows: [AuditRecord]
        /// The nodes whose domain stopped, with the time from the cut.
        let powerCuts: [(node: String, after: Duration)]
        /// Where `service` ran once the cluster settled (nil when no node survived).
        let serviceAfter: String?

        /// The domains a request succeeded against (for fence_virtd, which keeps no audit log: the domains whose
        /// QEMU process died).
        var fencedDomains: [String] {
            server == .fenceVirtd
                ? powerCuts.map { "node \($0.node)" }
                : fenceRows.filter { $0.result == .success }.compactMap(\.domainName)
        }
        /// The requests refused because their requester was being, or had just been, fenced.
        var refusals: [AuditRecord] { fenceRows.filter { $0.result == .refused } }
        var survivors: [String] {
            PacemakerRaceLab.nodeNames.filter { node in !powerCuts.contains { $0.node == node } }
        }
        /// Between the first two requests' arrivals.
        var requestGap: Double? {
            guard fenceRows.count >= 2 else { return nil }
            return fenceRows[1].requestedAt.timeIntervalSince(fenceRows[0].requestedAt)
        }

        var description: String {
            let rows = fenceRows.map { row in
                "#\(row.id) \(row.requester ?? "?") \(row.action) \(row.domainName ?? row.target): \(row.result?.rawValue ?? "unfinished")"
                    + (row.result == .refused ? " (\(row.message ?? ""))" : "")
            }
            let cuts = powerCuts.map {
                "\($0.node) +\(String(format: "%.1f", $0.after.seconds)) s"
            }
            return "round \(round) (\(server), \(teardown)): requests "
                + (requestGap.map { String(format: "%.2f s apart", $0) } ?? "-") + "; "
                + (rows.isEmpty ? "" : rows.joined(separator: "; ") + "; ")
                + "power cut: " + (cuts.isEmpty ? "none" : cuts.joined(separator: ", "))
                + "; service on \(serviceBefore) before, on \(serviceAfter ?? "no node") after"
        }
    }

    /// Runs one round: a fresh cluster on the domains (started if a previous round left one off), the link cut
    /// once `service` and both fence devices run, and the cluster watched until it settles.
    ///
    /// - Parameters:
    ///   - server: the fence server on the host.
    ///   - teardown: how the domains die when destroyed.
    func round(_ number: Int, server: Server, teardown: Teardown) async throws -> Outcome {
        try await startStoppedDomains()
        let gateway = try await GatewayLab(guests: 2)
        let guests = gateway.lab.guests
        try await onOwnThread {
            for guest in guests {
                // fence_xvm multicasts through the route to 224.0.0.0/4: the bridge, never the cluster link.
                try NetworkLab.ip(["-n", guest.namespace, "route", "add", "224.0.0.0/4", "dev", "eth0"])
            }
            try NetworkLab.ip([
                "-n", guests[0].namespace, "link", "add", "ring0", "type", "veth", "peer", "name", "ring0", "netns",
                guests[1].namespace,
            ])
            for (guest, node) in zip(guests, Self.ring) {
                try NetworkLab.ip(["-n", guest.namespace, "addr", "add", node.address + "/24", "dev", "ring0"])
                try NetworkLab.ip(["-n", guest.namespace, "link", "set", "ring0", "up"])
            }
        }
        var serve = zip(guests, Self.nodeNames).flatMap { guest, node in
            ["--requester-domain", "\(guest.ipv4)=\(domains[node]!)"]
        }
        switch server {
        case .fencegate: try await gateway.startFencegate(serve, uri: libvirtd.uri)
        case .fencegateWithoutArbitration:
            serve += ["--fence-race-window", "0"]
            try await gateway.startFencegate(serve, uri: libvirtd.uri)
        case .fenceVirtd:
            try await gateway.startFenceVirtd(configuration: try gateway.writeFenceVirtConf(uri: libvirtd.uri))
        }

        var nodes: [ClusterNode] = []
        for (guest, node) in zip(guests, Self.nodeNames) {
            nodes.append(
                try await ClusterNode(
                    name: node,
                    ring: Self.ring,
                    namespace: guest.namespace,
                    lab: gateway.lab,
                    in: gateway.fencegate.directory.path
                )
            )
        }
        defer { for node in nodes { node.powerCut() } }
        do {
            try await waitUntil("both nodes online", limit: .seconds(120), every: .milliseconds(500)) {
                try await nodes[0].run(["crm_mon", "-1"]).stdout.contains("Online: [ node1 node2 ]")
            }
            try await configure(nodes[0], keyPath: gateway.keyPath)
            try await waitUntil(
                "both fence devices and the service run",
                limit: .seconds(120),
                every: .milliseconds(500)
            ) {
                let fencesNode1 = try await location(of: "fence-node1", from: nodes[0])
                let fencesNode2 = try await location(of: "fence-node2", from: nodes[0])
                let service = try await location(of: "service", from: nodes[0])
                return fencesNode1 == "node2" && fencesNode2 == "node1" && service != nil
            }
        } catch {
            throw ConditionNeverMet(
                description:
                    "\(error); node1's pacemaker log:\n\(nodes[0].log("log/pacemaker/pacemaker.log"))\nserver:\n\(gateway.serverLog.suffix(3000))"
            )
        }
        let serviceBefore = try await location(of: "service", from: nodes[0]) ?? "?"

        var watched: [(ClusterNode, pid_t)] = []
        for node in nodes {
            guard let pid = libvirtd.qemuPID(ofDomain: domains[node.name]!) else {
                throw ConditionNeverMet(description: "no QEMU process for \(domains[node.name]!)")
            }
            watched.append((node, pid))
        }
        let watcher = PowerCutWatcher(watching: watched)
        defer {
            watcher.stop()
            // A domain still held must run again for the next round.
            for (node, pid) in watched
            where teardown == .heldUntilKill && !watcher.cuts.contains(where: { $0.node == node.name }) {
                kill(pid, SIGCONT)
            }
        }
        if teardown == .heldUntilKill {
            for (_, pid) in watched { kill(pid, SIGSTOP) }
        }
        try NetworkLab.ip(["-n", guests[0].namespace, "link", "set", "ring0", "down"])
        watcher.linkCut()

        // Settled: no fence request still running, and either both nodes lost power, or one did and the other
        // shows it offline (its fencing confirmed) with the service running on itself.
        try await waitUntil("the cluster settles after the cut", limit: .seconds(120), every: .milliseconds(500)) {
            if server != .fenceVirtd {
                let rows = try await gateway.rows().filter { ["off", "reboot"].contains($0.action) }
                guard !rows.isEmpty, rows.allSatisfy({ $0.result != nil }) else { return false }
            }
            let cuts = watcher.cuts
            if cuts.count == 2 { return true }
            guard cuts.count == 1, let survivor = nodes.first(where: { $0.name != cuts[0].node }) else { return false }
            let status = try await survivor.run(["crm_mon", "-1"]).stdout
            let service = try await location(of: "service", from: survivor)
            return status.contains("OFFLINE: [ \(cuts[0].node) ]") && service == survivor.name
        }
        // A second fence that was on its way would show within this time: no request above took longer.
        try await Task.sleep(for: .seconds(3))
        let rows =
            server == .fenceVirtd ? [] : try await gateway.rows().filter { ["off", "reboot"].contains($0.action) }
        let cuts = watcher.cuts
        let survivor = nodes.first { node in !cuts.contains { $0.node == node.name } }
        let serviceAfter: String? =
            if let survivor { try await location(of: "service", from: survivor) } else { nil }
        try await gateway.stopServer()
        return Outcome(
            round: number,
            server: server,
            teardown: teardown,
            serviceBefore: serviceBefore,
            fenceRows: rows,
            powerCuts: cuts,
            serviceAfter: serviceAfter
        )
    }

    /// The node a resource runs on, as `node` sees it; nil if it runs nowhere.
    private func location(of resource: String, from node: ClusterNode) async throws -> String? {
        let result = try await node.run(["crm_resource", "--locate", "--resource", resource])
        // "resource service is running on: node1"
        guard let range = result.stdout.range(of: "is running on: ") else { return nil }
        return result.stdout[range.upperBound...].split(whereSeparator: \.isWhitespace).first.map(String.init)
    }

    /// Loads the cluster configuration through `node`: one fence_xvm device per node (mapped to its domain,
    /// banned from the node it fences), the Dummy resource `service`, and fencing enabled. No delays.
    private func configure(_ node: ClusterNode, keyPath: String) async throws {
        let devices = Self.nodeNames.map { name in
            """
            <primitive id="fence-\(name)" class="stonith" type="fence_xvm">
              <instance_attributes id="fence-\(name)-attributes">
                <nvpair id="fence-\(name)-map" name="pcmk_host_map" value="\(name):\(domains[name]!)"/>
                <nvpair id="fence-\(name)-key" name="key_file" value="\(keyPath)"/>
              </instance_attributes>
            </primitive>
            """
        }
        let resources =
            "<resources>" + devices.joined()
            + #"<primitive id="service" class="ocf" provider="pacemaker" type="Dummy"/></resources>"#
        let constraints =
            "<constraints>"
            + Self.nodeNames.map {
                #"<rsc_location id="fence-\#($0)-elsewhere" rsc="fence-\#($0)" node="\#($0)" score="-INFINITY"/>"#
            }
            .joined() + "</constraints>"
        // Devices and bans in one update, so that Pacemaker never starts a device on the node it fences.
        let query = try await node.run(["cibadmin", "--query", "--scope", "configuration"])
        guard query.status == 0, query.stdout.contains("<resources/>"), query.stdout.contains("<constraints/>") else {
            throw ConditionNeverMet(description: "unexpected cluster configuration: \(query.stdout)\(query.stderr)")
        }
        let configuration = query.stdout.replacingOccurrences(of: "<resources/>", with: resources)
            .replacingOccurrences(of: "<constraints/>", with: constraints)
        for command in [
            ["cibadmin", "--replace", "--scope", "configuration", "--xml-text", configuration],
            ["crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--update", "true"],
        ] {
            let result = try await node.run(command)
            guard result.status == 0 else {
                throw ConditionNeverMet(description: "\(command[0]) failed: \(result.stderr)")
            }
        }
    }

    private func startStoppedDomains() async throws {
        for domain in domains.values.sorted()
        where try await virsh(["domstate", domain]).trimmingCharacters(in: .whitespacesAndNewlines) != "running" {
            try await virsh(["start", domain])
        }
    }

    @discardableResult
    private func virsh(_ arguments: [String]) async throws -> String {
        let result = try await runProgram("/usr/bin/virsh", ["--connect", libvirtd.uri] + arguments)
        guard result.status == 0 else {
            throw ConditionNeverMet(description: "virsh \(arguments.joined(separator: " ")) failed: \(result.stderr)")
        }
        return result.stdout
    }

    /// A QEMU domain as small as QEMU allows: TCG, 32 MiB, no disk, no network (the node's network is its
    /// namespace; the domain is what the hypervisor powers off).
    static func domainDefinition(name: String, uuid: String? = nil) -> String {
        """
        <domain type='qemu'>
          <name>\(name)</name>\(uuid.map { "\n  <uuid>\($0)</uuid>" } ?? "")
          <memory unit='MiB'>32</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64' machine='pc'>hvm</type></os>
          <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
        </domain>
        """
    }
}

/// Cuts a node's power the moment its domain has really stopped: when the domain's QEMU process is gone.
///
/// It watches the QEMU processes by PID (every 20 ms, on a thread of its own) rather than asking libvirt,
/// whose state of a domain that a reboot destroys and starts again may read "running" throughout.
final class PowerCutWatcher: @unchecked Sendable {
    private let state = Mutex<(cut: ContinuousClock.Instant?, cuts: [(node: String, after: Duration)], stopped: Bool)>(
        (nil, [], false)
    )

    init(watching nodes: [(node: ClusterNode, qemuPID: pid_t)]) {
        Thread { [self] in
            var alive = nodes
            while !state.withLock({ $0.stopped }) {
                for (index, entry) in alive.enumerated().reversed() where !Self.isRunning(entry.qemuPID) {
                    entry.node.powerCut()
                    alive.remove(at: index)
                    state.withLock { state in
                        state.cuts.append((entry.node.name, state.cut.map { ContinuousClock.now - $0 } ?? .zero))
                    }
                }
                usleep(20_000)
            }
        }.start()
    }

    /// Marks the moment the link was cut, from which the cuts are timed.
    func linkCut() { state.withLock { $0.cut = ContinuousClock.now } }

    /// The nodes that lost power so far, in order.
    var cuts: [(node: String, after: Duration)] { state.withLock { $0.cuts } }

    func stop() { state.withLock { $0.stopped = true } }

    /// True while `pid` exists and is not a zombie.
    private static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.range(of: ") ", options: .backwards)
        else { return false }
        return stat[end.upperBound...].first != "Z"
    }
}
