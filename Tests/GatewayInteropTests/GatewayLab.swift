import Foundation
import Store
import TestSupport
import Testing

/// Skips loudly when the suite cannot create network namespaces (it needs root, as CI has).
let requiresRoot: ConditionTrait = .enabled(if: NetworkLab.isAvailable, "needs root to create network namespaces")

/// A namespace lab with `fencegate serve` (or fence_virtd) in the host namespace and guests on the bridge.
final class GatewayLab: @unchecked Sendable {
    let lab: NetworkLab
    let fencegate: FencegateBinary
    let keyPath: String
    private(set) var server: SpawnedProcess?
    /// What `fencegate serve` logged so far (its standard error).
    var serverLog: String {
        (try? String(contentsOfFile: fencegate.directory.file("serve.err"), encoding: .utf8)) ?? ""
    }

    /// - Parameter secondBridge: guests on a second bridge, `br1` (see `NetworkLab`), after the others.
    init(guests: Int, lastOctets: [Int]? = nil, secondBridge: Int = 0) async throws {
        if !NetworkLab.isAvailable {
            FileHandle.standardError.write(Data("WARNING: gateway interop tests SKIPPED: not root\n".utf8))
        }
        // Building the namespaces runs a few dozen `ip` commands: on a thread of its own, never on Swift's
        // cooperative pool, which the in-process services of other tests need.
        lab = try await onOwnThread {
            try NetworkLab(guests: guests, lastOctets: lastOctets, secondBridge: secondBridge)
        }
        fencegate = try FencegateBinary()
        keyPath = fencegate.directory.file("fence_xvm.key")
        let keygen = try await fencegate.run(["keygen", keyPath])
        guard keygen.status == 0 else { throw ConditionNeverMet(description: "keygen failed: \(keygen.stderr)") }
    }

    /// Starts `fencegate serve` in the host namespace on the cluster fixture (or `uri`), with the multicast
    /// listener on the bridge, plus `arguments`; waits until it is serving.
    func startFencegate(
        _ arguments: [String] = [],
        multicast: Bool = true,
        uri: String = Fixtures.clusterURI
    ) async throws {
        var command = [
            FencegateBinary.url.path, "serve", "--uri", uri, "--database", fencegate.database,
            "--listen", "127.0.0.1:0", "--key-file", keyPath, "--log-level", "info",
        ]
        if multicast { command += ["--multicast", "--multicast-interface", "br0"] }
        try await startFencegate(command: command + arguments)
    }

    /// Starts `fencegate serve --fence-virt-conf PATH` in the host namespace, in place of fence_virtd: the
    /// listener, key, hashes, groups and libvirt URI all come from the file.
    func startFencegate(fenceVirtConf: String) async throws {
        try await startFencegate(command: [
            FencegateBinary.url.path, "serve", "--fence-virt-conf", fenceVirtConf, "--database", fencegate.database,
            "--listen", "127.0.0.1:0", "--log-level", "info",
        ])
    }

    /// Starts `fencegate serve --config PATH` (a TOML configuration file) in the host namespace.
    func startFencegate(configFile: String) async throws {
        try await startFencegate(command: [
            FencegateBinary.url.path, "serve", "--config", configFile, "--database", fencegate.database,
            "--log-level", "info",
        ])
    }

    private func startFencegate(command: [String]) async throws {
        let output = fencegate.directory.file("serve.out")
        let errors = fencegate.directory.file("serve.err")
        let process = try lab.start(in: lab.host, command, stdout: output, stderr: errors)
        server = process
        try await waitUntil("fencegate serves") {
            !process.isRunning
                || ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("fencegate serving")
        }
        guard process.isRunning else {
            throw ConditionNeverMet(
                description: "serve exited: \((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")"
            )
        }
    }

    /// Starts the real fence_virtd in the host namespace with its own pid file and config, on the same
    /// test world, and waits until it answers.
    func startFenceVirtd(hash: String = "sha256", auth: String = "sha256", groups: String = "") async throws {
        try await startFenceVirtd(configuration: try writeFenceVirtConf(hash: hash, auth: auth, groups: groups))
    }

    /// Writes a fence_virt.conf for the lab (multicast on the bridge, the lab's key, the cluster fixture or
    /// `uri`) and returns its path.
    func writeFenceVirtConf(
        hash: String = "sha256",
        auth: String = "sha256",
        groups: String = "",
        uri: String = Fixtures.clusterURI
    ) throws -> String {
        let configuration = fencegate.directory.file("fence_virt.conf")
        try """
        fence_virtd {
            listener = "multicast";
            backend = "libvirt";
        }
        listeners {
            multicast {
                key_file = "\(keyPath)";
                address = "225.0.0.12";
                interface = "br0";
                family = "ipv4";
                port = "1229";
                hash = "\(hash)";
                auth = "\(auth)";
            }
        }
        backends {
            libvirt {
                uri = "\(uri)";
            }
        }
        \(groups)
        """.write(toFile: configuration, atomically: true, encoding: .utf8)
        return configuration
    }

    /// Starts the real fence_virtd with `configuration` and waits until it answers.
    func startFenceVirtd(configuration: String) async throws {
        let process = try lab.start(
            in: lab.host,
            ["/usr/sbin/fence_virtd", "-F", "-p", fencegate.directory.file("fence_virtd.pid"), "-f", configuration],
            stdout: fencegate.directory.file("virtd.out"),
            stderr: fencegate.directory.file("virtd.err")
        )
        server = process
        try await waitUntil("fence_virtd answers") {
            guard process.isRunning else { throw ConditionNeverMet(description: "fence_virtd exited") }
            return try await fenceXVM(guest: 0, ["-o", "monitor", "-t", "1", "-r", "5"]).status == 0
        }
    }

    /// Stops the server this lab started (SIGTERM, by its PID; SIGKILL after 5 s, for fence_virtd, which
    /// may inherit a blocked SIGTERM from the test runner) and waits for it.
    func stopServer() async throws {
        guard let server else { return }
        if server.isRunning { kill(server.processIdentifier, SIGTERM) }
        do {
            try await waitUntil("the server exits", limit: .seconds(5)) { !server.isRunning }
        } catch {
            kill(server.processIdentifier, SIGKILL)
            try await waitUntil("the server exits after SIGKILL") { !server.isRunning }
        }
        self.server = nil
    }

    /// Runs the real fence_xvm in guest `guest` (0-based) with the lab's key: `-t 5` unless given.
    func fenceXVM(guest: Int = 0, _ arguments: [String], key: String? = nil) async throws -> ProgramResult {
        var command = ["/usr/sbin/fence_xvm", "-k", key ?? keyPath]
        if !arguments.contains("-t") { command += ["-t", "5"] }
        return try await lab.run(in: lab.guests[guest].namespace, command + arguments)
    }

    /// Runs fence_xvm as Pacemaker does: no arguments, `name=value` lines on stdin.
    func fenceXVMStdin(guest: Int = 0, _ lines: [String]) async throws -> ProgramResult {
        try await lab.run(
            in: lab.guests[guest].namespace,
            ["/usr/sbin/fence_xvm"],
            input: (["key_file=\(keyPath)"] + lines).joined(separator: "\n") + "\n"
        )
    }

    /// Every audit row, oldest first.
    /// The audit rows, oldest first, once the server has committed the rows of its reads: those go with its
    /// next commit, at most `AuditStore.defaultDeferredCommitDelay` after the answer. Read again until two
    /// reads three such delays apart agree.
    func rows() async throws -> [AuditRecord] {
        let store = try await AuditStore.open(path: fencegate.database, logger: ServiceHarness.logger)
        var rows = try await store.query(AuditQuery(limit: 1000)).records
        let giveUp = ContinuousClock.now + .seconds(10)
        while true {
            try await Task.sleep(for: AuditStore.defaultDeferredCommitDelay * 3)
            let again = try await store.query(AuditQuery(limit: 1000)).records
            if again == rows || ContinuousClock.now > giveUp { return again.reversed() }
            rows = again
        }
    }

    func guestIPv4(_ index: Int) -> String { lab.guests[index].ipv4 }
}
