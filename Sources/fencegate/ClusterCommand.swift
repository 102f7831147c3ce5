import ArgumentParser
import Cluster
import FenceCore
import FoundationEssentials
import Logging
import MulticastGateway

/// `fencegate cluster status|confirm-down`: an operator's commands in cluster mode, through the local
/// corosync (they join the cluster's group for a moment, as a member of role `operator`).
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract:
            "See the Fencegate cluster (members, quorum, domains per host), or confirm that a host which left is down.",
        subcommands: [ClusterStatusCommand.self, ConfirmDown.self]
    )
}

/// How an operator's command finds the cluster and introduces itself: the name and the gateway keys the
/// hosts hold (the hosts accept only a member that holds the same keys).
struct ClusterConnection: ParsableArguments {
    @Option(help: "The configuration file whose [cluster] name and gateway keys to use.")
    var config: String?

    @Option(help: "The cluster's name (the CPG group), as given to serve --cluster.")
    var cluster: String?

    @Option(
        name: .customLong("key-file"),
        help:
            "A gateway key file the hosts hold (repeat for several; default with --cluster: /etc/cluster/fence_xvm.key)."
    )
    var keyFiles: [String] = []

    @Option(help: "Seconds to wait for the members to answer.")
    var timeout: Double = 10

    /// True if any option names a cluster (`audit` then reads every host's log).
    var isGiven: Bool { cluster != nil || config != nil }

    /// The cluster's name and this command's introduction.
    func introduction() throws -> (name: String, hello: Hello) {
        var name = cluster
        var fingerprints: [String] = []
        if let config {
            let settings: ServeSettings
            do {
                settings = try ConfigurationFile.read(path: config)
            } catch {
                throw CLIFailure.configuration(error.description)
            }
            name = name ?? settings.clusterName
            var logger = Logger(label: "config")
            logger.logLevel = .critical
            fingerprints = try settings.loadGateways(logger: logger).configurations.map {
                KeyFile.fingerprint(of: $0.key)
            }
        }
        guard let name else {
            throw ValidationError("name the cluster: --cluster NAME, or --config FILE with a [cluster] table")
        }
        let files = keyFiles.isEmpty && config == nil ? ["/etc/cluster/fence_xvm.key"] : keyFiles
        for path in files {
            do {
                fingerprints.append(KeyFile.fingerprint(of: try KeyFile.read(at: path).key))
            } catch {
                throw CLIFailure.other("cannot read key file \(path): \(error)")
            }
        }
        let user = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.userName
        let host = ProcessInfo.processInfo.hostName
        return (name, Hello(keyFingerprints: fingerprints, hostName: "\(user)@\(host)", role: .operator))
    }

    /// Joins, waits for the members, runs `body`, leaves; a failure is one line on stderr and exit 1.
    func withMembership<T: Sendable>(
        logLevel: Logger.Level = .critical,
        _ body: @Sendable (ClusterMembership) async throws -> T
    ) async throws -> T {
        let (name, hello) = try introduction()
        var logger = Logger(label: "fencegate.cluster")
        logger.logLevel = logLevel
        do {
            return try await ClusterOperator.withMembership(
                name: name,
                hello: hello,
                timeout: .milliseconds(Int64(timeout * 1000)),
                logger: logger,
                body
            )
        } catch let error as ClusterCommandError {
            // Reasons may name members from their hellos: printed escaped.
            throw CLIFailure.other(error.description.escapingControlCharacters)
        }
    }
}

/// `fencegate cluster status`.
struct ClusterStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the cluster's members, its quorum, and each host's domains."
    )

    @OptionGroup var connection: ClusterConnection

    @Flag(name: .long, help: "Print the status as JSON.")
    var json = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: LogLevelArgument?

    func run() async throws {
        try await reportingFailures {
            let status = try await connection.withMembership(logLevel: logLevel?.level ?? .critical) { $0.status }
            print(json ? try JSONText.encode(ClusterStatusJSON(status)) : Self.text(status))
        }
    }

    static func text(_ status: ClusterStatus) -> String {
        let quorum = status.quorate.map { $0 ? "quorate" : "NOT quorate" } ?? "quorum unknown"
        var lines = ["cluster \(status.name): \(quorum) (as this host's partition sees it)"]
        var rows: [[String]] = []
        for member in status.members where !member.isLocal {
            let host = member.hostName ?? "-"
            let standing = member.standing + (member.reason.map { ": \($0)" } ?? "")
            if member.domains.isEmpty {
                rows.append([host, "node \(member.nodeID)", member.role ?? "-", standing, "", ""])
            }
            for domain in member.domains {
                rows.append([
                    host, "node \(member.nodeID)", member.role ?? "-", standing, domain.name, domain.state.rawValue,
                ])
            }
        }
        lines.append(Table.render(header: ["HOST", "NODE", "ROLE", "STANDING", "DOMAIN", "STATE"], rows: rows))
        for host in status.departed {
            lines.append(
                "host \(host.hostName.escapingControlCharacters) left the cluster"
                    + (host.confirmedDown ? " and was confirmed down" : "; not confirmed down")
                    + " (\(host.domains.count) domains)"
            )
        }
        return lines.joined(separator: "\n")
    }
}

/// `fencegate cluster confirm-down HOST`.
struct ConfirmDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "confirm-down",
        abstract: "Confirm that HOST, which left the cluster, is down (powered off, or fenced by the host cluster).",
        discussion: """
            Until then, a request for a domain of a host that left fails: the domain may still run there. Once \
            confirmed, and while the partition is quorate, its domains count as off (off, reboot and status \
            succeed without acting) until the host rejoins. Refused from a partition that is not quorate, and \
            for a host that is a member. Confirm only what you checked: a wrong confirmation can make two \
            copies of a domain run.
            """
    )

    @Argument(help: "The host's name, as `fencegate cluster status` lists it.")
    var host: String

    @OptionGroup var connection: ClusterConnection

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: LogLevelArgument?

    func run() async throws {
        try await reportingFailures {
            let user = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.userName
            let (host, timeout) = (host, connection.timeout)
            try await connection.withMembership(logLevel: logLevel?.level ?? .critical) { membership in
                do {
                    try await membership.confirmDown(host, by: user, timeout: .milliseconds(Int64(timeout * 1000)))
                } catch {
                    throw CLIFailure.other("\(error)".escapingControlCharacters)
                }
            }
            print("host \(host) confirmed down: every member of this partition counts its domains as off")
        }
    }
}

/// `cluster status --json`: the same fields as `GET /cluster`.
struct ClusterStatusJSON: Encodable {
    struct Member: Encodable {
        let node: UInt32
        let pid: UInt32
        let local: Bool
        let host: String?
        let standing: String
        let reason: String?
        let role: String?
        let domains: [DomainJSON]
    }

    struct Departed: Encodable {
        let host: String
        let confirmedDown: Bool
        let domains: [DomainJSON]
    }

    let name: String
    let quorate: Bool?
    let members: [Member]
    let departed: [Departed]

    init(_ status: ClusterStatus) {
        name = status.name
        quorate = status.quorate
        members = status.members.map {
            Member(
                node: $0.nodeID,
                pid: $0.pid,
                local: $0.isLocal,
                host: $0.hostName,
                standing: $0.standing,
                reason: $0.reason,
                role: $0.role,
                domains: $0.domains.map(DomainJSON.init)
            )
        }
        departed = status.departed.map {
            Departed(host: $0.hostName, confirmedDown: $0.confirmedDown, domains: $0.domains.map(DomainJSON.init))
        }
    }
}
