import FenceAPI
import FenceCore
import FoundationEssentials
import Glibc
import Logging
import MulticastGateway

/// The fence service's tunables these settings give.
extension ServeSettings {
    var serviceConfiguration: FenceService.Configuration {
        var configuration = FenceService.Configuration()
        configuration.operationTimeout = .seconds(operationTimeout)
        configuration.hypervisorThreads = hypervisorThreads
        configuration.refusalsPerClientPerMinute = refusalsPerClient
        configuration.refusalsPerMinute = refusalsPerMinute
        configuration.auditRetention = AuditRetention(
            changes: changeRetentionDays == 0 ? nil : .seconds(changeRetentionDays * 86_400),
            others: readRetentionDays == 0 ? nil : .seconds(readRetentionDays * 86_400)
        )
        configuration.races.window = .seconds(raceWindow)
        configuration.races.grace = .seconds(priorityGrace)
        configuration.races.preferred = preferredDomains
        configuration.races.requesters = requesterDomains
        return configuration
    }
}

/// Everything `serve` runs with, from its command-line options or from a configuration file; the defaults
/// are the options' defaults.
struct ServeSettings {
    /// Where one fence_xvm gateway's settings come from.
    enum GatewaySource {
        /// Settings given directly (without the key, which is read from `keyFile` at start and on reload).
        case direct(GatewayConfiguration, keyFile: String)
        /// fence_virtd's configuration file.
        case fenceVirtConf(String)
    }

    /// One invalid setting: its command-line option, its configuration key, and what is wrong.
    struct Problem: Equatable {
        let option: String
        let key: String
        let message: String
    }

    /// nil: `--uri`, `$FENCEGATE_URI`, else `qemu:///system`.
    var uri: String?
    /// nil: `--database`, `$FENCEGATE_DATABASE`, else the default path.
    var database: String?
    var listen = ListenAddress.default
    var tlsCert: String?
    var tlsKey: String?
    var allowPlainHTTP = false
    /// Serve the Redfish subset under /redfish on the HTTP listener.
    var redfish = false
    var maxBodyBytes = 64 * 1024
    var maxConnections: UInt32 = 256
    var maxConnectionsPerAddress: UInt32 = 64
    var reservedConnections: UInt32 = 32
    var connectionTimeout: UInt32 = 30
    var httpThreads: UInt32 = 2
    var operationTimeout: Double = 60
    var healthInterval: Double = 5
    var hypervisorThreads = FenceService.Configuration().hypervisorThreads
    var refusalsPerClient = FenceService.Configuration().refusalsPerClientPerMinute
    var refusalsPerMinute = FenceService.Configuration().refusalsPerMinute
    /// Days the audit log keeps rows of requests that change a domain's state (0: forever).
    var changeRetentionDays = 0
    /// Days it keeps every other row: reads and refused requests (0: forever).
    var readRetentionDays = Int(AuditRetention.defaultOthers.components.seconds / 86_400)
    /// Fence races: seconds a fenced domain's own fences are refused (0: no arbitration).
    var raceWindow: Double = 60
    /// Domains whose fences win a race within the grace period.
    var preferredDomains: [String] = []
    var priorityGrace: Double = 5
    /// Guest addresses mapped to domains, where libvirt cannot tell.
    var requesterDomains: [String: String] = [:]
    /// The fence_xvm gateways, each with its own listeners, key, hashes and groups (none: no gateway).
    var gateways: [GatewaySource] = []
    /// The cluster's CPG group: join it (cluster mode); nil: this host alone.
    var clusterName: String?
    var logLevel: Logger.Level?
    var logFormat: LogFormat?

    /// The longest retention that can be set, in days (a hundred years).
    static let maximumRetentionDays = 36_500

    /// What is wrong with these settings, if anything.
    var problems: [Problem] {
        var problems: [Problem] = []
        func check(_ condition: Bool, _ option: String, _ key: String, _ message: String) {
            if !condition { problems.append(Problem(option: option, key: key, message: message)) }
        }
        check((tlsCert == nil) == (tlsKey == nil), "--tls-cert", "http.tls_cert", "and the TLS key go together")
        check(
            tlsCert != nil || listen.isLoopback || allowPlainHTTP,
            "--listen",
            "http.listen",
            "\(listen) is not loopback: refusing plain HTTP (bearer tokens would cross the network in clear text); "
                + "give a TLS certificate and key, or allow plain HTTP explicitly"
        )
        check(
            !redfish || tlsCert != nil || allowPlainHTTP,
            "--redfish",
            "http.redfish",
            "sends passwords (HTTP Basic) on every request: serve it over HTTPS (a TLS certificate and key), or allow plain HTTP explicitly"
        )
        check(
            healthInterval >= 0.1 && healthInterval <= 3600,
            "--health-interval",
            "hypervisor.health_interval",
            "must be 0.1 to 3600 seconds"
        )
        check(
            operationTimeout > 0 && operationTimeout <= 3600,
            "--operation-timeout",
            "hypervisor.operation_timeout",
            "must be more than 0 and at most 3600 seconds"
        )
        check(
            (1...(64 * 1024 * 1024)).contains(maxBodyBytes),
            "--max-body-bytes",
            "http.max_body_bytes",
            "must be 1 to 67108864"
        )
        check(maxConnections >= 1, "--max-connections", "http.max_connections", "must be at least 1")
        check(
            reservedConnections < maxConnections,
            "--reserved-connections",
            "http.reserved_connections",
            "must be less than the connections in all (--max-connections, \(maxConnections))"
        )
        check((1...64).contains(httpThreads), "--http-threads", "http.threads", "must be 1 to 64")
        check(connectionTimeout >= 1, "--connection-timeout", "http.connection_timeout", "must be at least 1 second")
        check((1...1024).contains(hypervisorThreads), "--hypervisor-threads", "hypervisor.threads", "must be 1 to 1024")
        check(
            (1...100_000).contains(refusalsPerClient),
            "--audit-refusals-per-client",
            "audit.refusals_per_client",
            "must be 1 to 100000"
        )
        check(
            (1...100_000).contains(refusalsPerMinute),
            "--audit-refusals-per-minute",
            "audit.refusals_per_minute",
            "must be 1 to 100000"
        )
        check(
            (0...Self.maximumRetentionDays).contains(changeRetentionDays),
            "--audit-change-retention-days",
            "audit.change_retention_days",
            "must be 0 (forever) to \(Self.maximumRetentionDays) days"
        )
        check(
            (0...Self.maximumRetentionDays).contains(readRetentionDays),
            "--audit-read-retention-days",
            "audit.read_retention_days",
            "must be 0 (forever) to \(Self.maximumRetentionDays) days"
        )
        check(
            raceWindow >= 0 && raceWindow <= 86400,
            "--fence-race-window",
            "fence_races.window",
            "must be 0 (off) to 86400 seconds"
        )
        check(
            priorityGrace >= 0 && priorityGrace <= 300,
            "--priority-grace",
            "fence_races.grace",
            "must be 0 to 300 seconds"
        )
        if let clusterName {
            check(
                (1...128).contains(clusterName.utf8.count) && !clusterName.contains(where: \.isNewline),
                "--cluster",
                "cluster.name",
                "must be 1 to 128 bytes on one line"
            )
        }
        for domain in preferredDomains {
            check(
                DomainTarget(domain).problem == nil,
                "--preferred-domain",
                "fence_races.preferred",
                "'\(domain)' cannot name a domain"
            )
        }
        for (address, domain) in requesterDomains {
            check(
                canonicalIPAddress(address) != nil,
                "--requester-domain",
                "fence_races.requester",
                "address '\(address)' is not a numeric IPv4 or IPv6 address"
            )
            check(
                DomainTarget(domain).problem == nil,
                "--requester-domain",
                "fence_races.requester",
                "'\(domain)' cannot name a domain"
            )
        }
        return problems
    }

    /// The HTTP server's configuration, with the TLS files read.
    func httpConfiguration() throws -> HTTPServerConfiguration {
        var configuration = HTTPServerConfiguration()
        configuration.listen = listen
        configuration.maximumBodyBytes = maxBodyBytes
        configuration.maximumConnections = maxConnections
        configuration.maximumConnectionsPerAddress = maxConnectionsPerAddress
        configuration.connectionsReservedForCredentialed = reservedConnections
        configuration.connectionTimeoutSeconds = connectionTimeout
        configuration.threads = httpThreads
        if let tlsCert, let tlsKey {
            do {
                configuration.tls = (
                    try String(contentsOfFile: tlsCert, encoding: .utf8),
                    try String(contentsOfFile: tlsKey, encoding: .utf8)
                )
            } catch {
                throw CLIFailure.other("cannot read the TLS certificate or key: \(fileErrorText(error))")
            }
        }
        return configuration
    }

    /// Each gateway's configuration with its key read, and the libvirt URI fence_virt.conf names (if any
    /// does; all that do must agree). Called at start and again on SIGHUP.
    /// - Throws: `CLIFailure` for a file or key that cannot be read, and for two gateways that would listen
    ///   on the same multicast group, port and interface, or the same TCP address.
    /// The gateways, and what a fence_virt.conf says beside them: its libvirt URI, and the cluster its `cpg`
    /// backend joins.
    func loadGateways(
        logger: Logger
    ) throws -> (
        configurations: [GatewayConfiguration], uri: String?, clusterName: String?
    ) {
        var configurations: [GatewayConfiguration] = []
        var uri: String?
        var clusterName: String?
        for (index, source) in gateways.enumerated() {
            let (configuration, fileURI, fileCluster) = try Self.load(source, logger: logger)
            clusterName = clusterName ?? fileCluster
            if let fileURI {
                if let uri, uri != fileURI {
                    throw CLIFailure.other(
                        "the gateways' fence_virt.conf files name different libvirt URIs: \(uri) and \(fileURI)"
                    )
                }
                uri = fileURI
            }
            if let clash = configurations.firstIndex(where: { $0.sharesListener(with: configuration) }) {
                throw CLIFailure.other(
                    "gateway[\(clash)] and gateway[\(index)] would listen on the same address: give each its own "
                        + "multicast group, port or interface, or TCP address"
                )
            }
            configurations.append(configuration)
        }
        return (configurations, uri, clusterName)
    }

    private static func load(
        _ source: GatewaySource,
        logger: Logger
    ) throws -> (configuration: GatewayConfiguration, uri: String?, clusterName: String?) {
        switch source {
        case .direct(var configuration, let keyFile):
            try GatewayOptions.loadKey(into: &configuration, from: keyFile, logger: logger)
            return (configuration, nil, nil)
        case .fenceVirtConf(let path):
            let file: FenceVirtdConfiguration
            do {
                file = try FenceVirtdConfiguration(contentsOf: path)
            } catch {
                throw CLIFailure.other(error.description)
            }
            for note in file.ignored { logger.warning("\(note)") }
            var configuration = file.gateway
            try GatewayOptions.loadKey(into: &configuration, from: file.keyFile, logger: logger)
            return (configuration, file.libvirtURI, file.clusterName)
        }
    }
}

extension GatewayConfiguration {
    /// True if this gateway and `other` would both listen on one multicast group, port and interface, or on
    /// one TCP address: each request must reach exactly one gateway.
    func sharesListener(with other: GatewayConfiguration) -> Bool {
        if let mine = multicast, let theirs = other.multicast,
            SocketAddress(host: mine.group, port: mine.port) == SocketAddress(host: theirs.group, port: theirs.port),
            mine.interface == nil || theirs.interface == nil || mine.interface == theirs.interface
        {
            return true
        }
        // Other clashes of TCP addresses (a wildcard and a specific one) fail when the second one binds.
        if let mine = tcp, let theirs = other.tcp, mine == theirs, mine.port != 0 { return true }
        return false
    }
}

/// `text` if it is a numeric IPv4 or IPv6 address, else nil.
func canonicalIPAddress(_ text: String) -> String? {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1 ? text : nil
}
