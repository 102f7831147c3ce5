import Foundation

/// One cluster node (Debian's corosync, and optionally pacemaker) running in a guest namespace of a lab, as
/// if that namespace were a host or a VM.
///
/// The node gets mount, UTS and PID namespaces of its own (`unshare`), private directories bound over
/// /var/lib/corosync, /var/lib/pacemaker, /var/log, /run and /etc/corosync, a tmpfs /dev/shm, and the hostname
/// `name`. Its processes run without CAP_SYS_BOOT, so nothing Pacemaker does (a "panic" reboots the machine
/// it runs on) can reach this machine. `powerCut()` kills the node's PID 1, and with it every process of the
/// node at once, as pulling a VM's power would. The network lab kills it too when destroyed.
public final class ClusterNode: @unchecked Sendable {
    public let name: String
    /// The node's directory: its logs are in `log/` (corosync.out, pacemaker/pacemaker.log).
    public let directory: String
    private let process: SpawnedProcess
    private let initPID: pid_t

    /// Writes the node's directories and corosync.conf, and starts corosync (then pacemakerd, if asked) in
    /// `namespace`.
    ///
    /// - Parameters:
    ///   - ring: the cluster link's addresses, node name → address; `name` must be one of them. Two nodes
    ///     get votequorum's two-node mode.
    ///   - cluster: corosync's cluster name.
    public init(
        name: String,
        ring: [(name: String, address: String)],
        cluster: String = "fgrace",
        pacemaker: Bool = true,
        namespace: String,
        lab: NetworkLab,
        in parent: String
    ) async throws {
        self.name = name
        directory = parent + "/" + name
        let directories = [
            "lib-corosync", "lib-pacemaker/cib", "lib-pacemaker/pengine", "lib-pacemaker/blackbox",
            "lib-pacemaker/cores", "log/pacemaker", "run", "etc-corosync",
        ]
        for path in directories {
            try FileManager.default.createDirectory(atPath: directory + "/" + path, withIntermediateDirectories: true)
        }
        let owner = try await runProgram(
            "/bin/chown",
            ["-R", "hacluster:haclient", directory + "/lib-pacemaker", directory + "/log/pacemaker"]
        )
        guard owner.status == 0 else {
            throw ConditionNeverMet(
                description: "chown hacluster:haclient failed (is pacemaker installed?): \(owner.stderr)"
            )
        }
        for path in ["cib", "pengine", "blackbox", "cores"] { chmod(directory + "/lib-pacemaker/" + path, 0o750) }
        try Self.corosyncConfiguration(ring: ring, cluster: cluster).write(
            toFile: directory + "/etc-corosync/corosync.conf",
            atomically: true,
            encoding: .utf8
        )
        let boot = directory + "/boot.sh"
        try Self.bootScript(name: name, directory: directory, pacemaker: pacemaker).write(
            toFile: boot,
            atomically: true,
            encoding: .utf8
        )
        process = try lab.start(
            in: namespace,
            [
                "/usr/bin/unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child",
                "/usr/bin/setpriv", "--bounding-set", "-sys_boot", "/bin/sh", boot,
            ],
            stdout: directory + "/node.out",
            stderr: directory + "/node.err"
        )
        // `ip netns exec` execs unshare, whose one child is the node's PID 1.
        let unsharePID = process.processIdentifier
        let process = process
        var child: pid_t?
        try await waitUntil("node \(name) has its PID 1") {
            let text =
                (try? String(contentsOfFile: "/proc/\(unsharePID)/task/\(unsharePID)/children", encoding: .utf8)) ?? ""
            child = text.split(separator: " ").first.flatMap { pid_t($0) }
            return child != nil || !process.isRunning
        }
        guard let child, process.isRunning else {
            throw ConditionNeverMet(
                description: "node \(name) did not start: \(Self.tail(of: directory + "/node.err"))"
            )
        }
        initPID = child
    }

    /// Whether the node still runs.
    public var isRunning: Bool { process.isRunning }

    /// Kills the node's PID 1 and so every process of the node (its PID namespace), at once.
    public func powerCut() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Runs a command inside the node (its mount, UTS, network and PID namespaces, so that process ids it
    /// reads from /proc are the node's): `crm_mon`, `cibadmin`, `pkill corosync`….
    public func run(_ command: [String]) async throws -> ProgramResult {
        try await runProgram(
            "/usr/bin/nsenter",
            ["--target", "\(initPID)", "--mount", "--uts", "--net", "--pid", "--"] + command
        )
    }

    /// Starts a long-running command inside the node (its PID namespace too, so that `powerCut()` ends it),
    /// with its output in files under the node's directory (`NAME.out`, `NAME.err`).
    public func start(_ command: [String], logName: String) throws -> SpawnedProcess {
        try SpawnedProcess(
            "/usr/bin/nsenter",
            ["--target", "\(initPID)", "--mount", "--uts", "--net", "--pid", "--"] + command,
            standardOutput: directory + "/\(logName).out",
            standardError: directory + "/\(logName).err"
        )
    }

    /// Waits until corosync in this node says the cluster is quorate.
    public func waitUntilQuorate() async throws {
        try await waitUntil("node \(name) is quorate", limit: .seconds(60)) {
            (try? await self.run(["corosync-quorumtool", "-s"]))?.stdout.contains("Quorate:          Yes") == true
        }
    }

    /// The last lines of one of the node's logs (a path under its directory), for failure messages.
    public func log(_ path: String, lines: Int = 30) -> String { Self.tail(of: directory + "/" + path, lines: lines) }

    private static func tail(of path: String, lines: Int = 30) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no \(path))"
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// corosync.conf for a cluster of the nodes on `ring`, with knet, a 1 s token, and votequorum (two-node
    /// mode for two). One directive per line: corosync's parser rejects `totem { version: 2` on one line.
    private static func corosyncConfiguration(ring: [(name: String, address: String)], cluster: String) -> String {
        let nodes = ring.enumerated().map { index, node in
            """
                node {
                    ring0_addr: \(node.address)
                    name: \(node.name)
                    nodeid: \(index + 1)
                }
            """
        }
        return """
            totem {
                version: 2
                cluster_name: \(cluster)
                transport: knet
                crypto_cipher: none
                crypto_hash: none
                token: 1000
                seqno_unchanged_const: 2
            }
            nodelist {
            \(nodes.joined(separator: "\n"))
            }
            quorum {
                provider: corosync_votequorum
                two_node: \(ring.count == 2 ? 1 : 0)
            }
            logging {
                to_stderr: yes
                to_syslog: no
            }

            """
    }

    /// The node's PID 1: private mounts, hostname, corosync (waited for), then pacemakerd if asked; then it
    /// stays, reaping, until the power cut.
    private static func bootScript(name: String, directory: String, pacemaker: Bool) -> String {
        """
        set -e
        mount --bind '\(directory)/lib-corosync' /var/lib/corosync
        mount --bind '\(directory)/lib-pacemaker' /var/lib/pacemaker
        mount --bind '\(directory)/log' /var/log
        mount --bind '\(directory)/run' /run
        mount --bind '\(directory)/etc-corosync' /etc/corosync
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm
        hostname '\(name)'
        corosync -f > /var/log/corosync.out 2>&1 &
        until corosync-cfgtool -s > /dev/null 2>&1; do sleep 0.2; done
        \(pacemaker ? "PCMK_logfacility=none PCMK_logfile=/var/log/pacemaker/pacemaker.log pacemakerd > /var/log/pacemakerd.out 2>&1 &" : "")
        # PID 1 stays while the daemons come and go (a stopped corosync is not a power cut), reaping them.
        while :; do sleep 1 & wait; done

        """
    }
}
