import ArgumentParser
import Cluster
import FenceAPI
import FenceCore
import FoundationEssentials
import Glibc
import Logging
import MulticastGateway
import ServiceLifecycle
import Store
import UnixSignals

/// `fencegate serve`: runs the fence service and its HTTP API until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the fence service with its HTTP API until SIGTERM or SIGINT."
    )

    @Option(
        help: ArgumentHelp(
            "Take the settings from this configuration file (TOML; see `fencegate config check`).",
            discussion: "Options given besides override the file's settings, which override the defaults.",
            valueName: "path"
        )
    )
    var config: String?

    @Option(
        help:
            "Address and port of the HTTP API: 127.0.0.1:8786 (the default), [::1]:8786, 0.0.0.0:8443 (port 0: any free port)."
    )
    var listen: String?

    @Option(help: "PEM certificate (chain) for HTTPS.") var tlsCert: String?
    @Option(help: "PEM private key for HTTPS.") var tlsKey: String?

    @Flag(help: "Allow plain HTTP on a non-loopback address (bearer tokens then cross the network in clear text).")
    var allowPlainHttp = false

    @Flag(
        help: "Serve the Redfish subset under /redfish/v1 (for fence_redfish); needs HTTPS unless --allow-plain-http."
    )
    var redfish = false

    @Option(help: "Largest request body accepted, in bytes (larger: 413; default \(ServeSettings().maxBodyBytes)).")
    var maxBodyBytes: Int?
    @Option(help: "Most simultaneous HTTP connections (default \(ServeSettings().maxConnections)).")
    var maxConnections: UInt32?
    @Option(
        help:
            "Most simultaneous HTTP connections from one client address (0: no limit; default \(ServeSettings().maxConnectionsPerAddress))."
    )
    var maxConnectionsPerAddress: UInt32?
    @Option(
        help:
            "Of the HTTP connections, how many only clients that presented a valid fence token within the last day may take (default \(ServeSettings().reservedConnections))."
    )
    var reservedConnections: UInt32?
    @Option(help: "Seconds an idle HTTP connection is kept (default \(ServeSettings().connectionTimeout)).")
    var connectionTimeout: UInt32?
    @Option(help: "libmicrohttpd threads accepting and parsing requests (default \(ServeSettings().httpThreads)).")
    var httpThreads: UInt32?

    @Option(
        help:
            "Seconds a fence operation may take, lock wait included, before it fails as timed out (default \(ServeSettings().operationTimeout.helpText))."
    )
    var operationTimeout: Double?

    @Option(
        help:
            "Seconds between hypervisor connection checks (a dropped connection is re-opened; default \(ServeSettings().healthInterval.helpText))."
    )
    var healthInterval: Double?

    @Option(
        help:
            "Most threads blocked in hypervisor calls at once; further calls wait for one (default \(ServeSettings().hypervisorThreads))."
    )
    var hypervisorThreads: Int?

    @Option(
        help:
            "Refused requests audited one by one per client and minute; the rest share one summary row (default \(ServeSettings().refusalsPerClient))."
    )
    var auditRefusalsPerClient: Int?

    @Option(
        help:
            "Refused requests audited one by one per minute, all clients together (default \(ServeSettings().refusalsPerMinute))."
    )
    var auditRefusalsPerMinute: Int?

    @Option(
        help:
            "Days the audit log keeps rows of requests that change a domain's state (off, on, reboot, ...); 0: forever (default \(ServeSettings().changeRetentionDays))."
    )
    var auditChangeRetentionDays: Int?

    @Option(
        help:
            "Days the audit log keeps every other row (reads, refused requests); 0: forever (default \(ServeSettings().readRetentionDays))."
    )
    var auditReadRetentionDays: Int?

    @Option(
        help:
            "Seconds after a fence during which the fenced domain's own off and reboot requests are refused (fence races; 0: off; default \(ServeSettings().raceWindow.helpText))."
    )
    var fenceRaceWindow: Double?

    @Option(
        help: ArgumentHelp(
            "Join the Fencegate cluster of this name through the local corosync (CPG); see the README's cluster mode.",
            valueName: "name"
        )
    )
    var cluster: String?

    @Option(help: "A domain (name or UUID) whose fences win a race within the priority grace; repeatable.")
    var preferredDomain: [String] = []

    @Option(
        help:
            "Seconds a fence of a preferred domain from another one waits, so that the preferred one's fence is decided first (default \(ServeSettings().priorityGrace.helpText))."
    )
    var priorityGrace: Double?

    @Option(
        help: ArgumentHelp(
            "A guest address and the domain it belongs to, where libvirt cannot tell; repeatable.",
            valueName: "address=domain"
        )
    )
    var requesterDomain: [String] = []

    @Option(
        help: ArgumentHelp(
            "Run in place of fence_virtd: read its configuration file as is (listener, key file, hash, auth, groups, libvirt URI).",
            discussion: "The fence_xvm gateway options below are then taken from the file and must not be given.",
            valueName: "path"
        )
    )
    var fenceVirtConf: String?

    @OptionGroup(title: "fence_xvm gateway") var gateway: GatewayOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if fenceVirtConf != nil, !gateway.givenOptions.isEmpty {
            throw ValidationError(
                "--fence-virt-conf sets the gateway from fence_virt.conf; drop \(gateway.givenOptions.joined(separator: ", "))"
            )
        }
        if let listen, ListenAddress(listen) == nil {
            throw ValidationError(
                "--listen must be a numeric IPv4 or IPv6 address with an optional port, e.g. 127.0.0.1:8786"
            )
        }
        // Without a file the options are the whole story: check them now. A file's settings are checked
        // with the options applied once the file is read.
        if config == nil, let problem = try settings(over: ServeSettings()).problems.first {
            throw ValidationError("\(problem.option) \(problem.message)")
        }
    }

    /// `base` (the configuration file's settings, or the defaults) with the options given applied over it.
    private func settings(over base: ServeSettings) throws -> ServeSettings {
        var settings = base
        func override<Value>(_ keyPath: WritableKeyPath<ServeSettings, Value>, _ value: Value?) {
            if let value { settings[keyPath: keyPath] = value }
        }
        override(\.listen, listen.flatMap(ListenAddress.init))
        override(\.tlsCert, tlsCert)
        override(\.tlsKey, tlsKey)
        if allowPlainHttp { settings.allowPlainHTTP = true }
        if redfish { settings.redfish = true }
        override(\.maxBodyBytes, maxBodyBytes)
        override(\.maxConnections, maxConnections)
        override(\.maxConnectionsPerAddress, maxConnectionsPerAddress)
        override(\.reservedConnections, reservedConnections)
        override(\.connectionTimeout, connectionTimeout)
        override(\.httpThreads, httpThreads)
        override(\.operationTimeout, operationTimeout)
        override(\.healthInterval, healthInterval)
        override(\.hypervisorThreads, hypervisorThreads)
        override(\.refusalsPerClient, auditRefusalsPerClient)
        override(\.refusalsPerMinute, auditRefusalsPerMinute)
        override(\.changeRetentionDays, auditChangeRetentionDays)
        override(\.readRetentionDays, auditReadRetentionDays)
        override(\.raceWindow, fenceRaceWindow)
        override(\.clusterName, cluster)
        if !preferredDomain.isEmpty { settings.preferredDomains = preferredDomain }
        override(\.priorityGrace, priorityGrace)
        if !requesterDomain.isEmpty { settings.requesterDomains = try Self.requesterDomains(requesterDomain) }
        let gateways: [ServeSettings.GatewaySource]
        if let fenceVirtConf {
            gateways = [.fenceVirtConf(fenceVirtConf)]
        } else if gateway.enabled {
            gateways = [.direct(try gateway.settings(), keyFile: gateway.keyFileOrDefault)]
        } else if !gateway.givenOptions.isEmpty {
            throw ValidationError(
                "\(gateway.givenOptions.joined(separator: ", ")) configure a listener that is not enabled: add --multicast or --tcp-listen"
            )
        } else {
            gateways = []
        }
        if !gateways.isEmpty {
            guard settings.gateways.isEmpty else {
                throw ValidationError(
                    "the configuration file sets the fence_xvm gateway: drop the gateway options, or the file's [gateway]"
                )
            }
            settings.gateways = gateways
        }
        return settings
    }

    /// This host's introduction to the cluster: its gateway keys' fingerprints and its name.
    private static func hello(of gateways: [GatewayConfiguration]) -> Hello {
        Hello(
            keyFingerprints: gateways.map { KeyFile.fingerprint(of: $0.key) },
            hostName: ProcessInfo.processInfo.hostName
        )
    }

    /// `ADDRESS=DOMAIN` pairs.
    private static func requesterDomains(_ pairs: [String]) throws -> [String: String] {
        var domains: [String: String] = [:]
        for pair in pairs {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw ValidationError("--requester-domain takes ADDRESS=DOMAIN, e.g. 192.168.122.11=pcmk1")
            }
            domains[parts[0]] = parts[1]
        }
        return domains
    }

    /// The settings in effect: the options given, over the configuration file's settings (if any), over the
    /// defaults. Read again on SIGHUP.
    private func currentSettings() throws -> ServeSettings {
        var base = ServeSettings()
        if let config {
            do {
                base = try ConfigurationFile.read(path: config)
            } catch {
                throw CLIFailure.configuration(error.description)
            }
        }
        let settings: ServeSettings
        do {
            settings = try self.settings(over: base)
        } catch let error as ValidationError {
            throw CLIFailure.configuration("\(config.map { "\($0): " } ?? "")\(error.message)")
        }
        if let problem = settings.problems.first {
            throw CLIFailure.configuration(
                "\(config.map { "\($0): " } ?? "")\(problem.option) (\(problem.key) in the file) \(problem.message)"
            )
        }
        return settings
    }

    func run() async throws {
        // SIGHUP reloads once the services run; until then, one must not end the process (its default).
        signal(SIGHUP, SIG_IGN)
        // A peer that closes while we write (an HTTP client, libvirtd) is an error on that write, not our end.
        signal(SIGPIPE, SIG_IGN)
        var global = self.global
        let settings: ServeSettings
        do {
            settings = try currentSettings()
        } catch let failure as CLIFailure {
            printError(failure.message)
            throw ExitCode(failure.exitCode)
        }
        global.uri = global.uri ?? settings.uri
        global.database = global.database ?? settings.database
        let logger = global.makeLogger(
            defaultLevel: .info,
            configuredLevel: settings.logLevel,
            configuredFormat: settings.logFormat
        )
        try await reportingFailures {
            let gatewayConfigurations = try settings.loadGateways(logger: logger)
            if let uri = gatewayConfigurations.uri {
                if let given = global.uri, given != uri {
                    throw CLIFailure.other(
                        "the libvirt URI \(given) contradicts fence_virt.conf's backends/libvirt/uri \(uri)"
                    )
                }
                global.uri = uri
            }
            var serviceConfiguration = settings.serviceConfiguration
            serviceConfiguration.races.recordsGuestAddresses = !gatewayConfigurations.configurations.isEmpty
            let context = try await ServiceContext.open(
                global,
                configuration: serviceConfiguration,
                syncsCompletionsLater: true,
                reserve: AuditSpaceReserve(),
                logger: logger
            )
            let notifier = SystemdNotifier()
            // Before the HTTP server accepts: its reserve of connections knows the fence agents again.
            await context.service.restoreCredentialedClients()
            let frontEnds = try FrontEnds(
                settings: settings,
                gateways: gatewayConfigurations.configurations,
                service: context.service,
                logger: logger
            )
            // A fence_virt.conf with backend = "cpg" asks for cluster mode too.
            let membership = (settings.clusterName ?? gatewayConfigurations.clusterName).map { name in
                ClusterMembership(
                    configuration: .init(
                        name: name,
                        hello: Self.hello(of: gatewayConfigurations.configurations)
                    ),
                    service: context.service,
                    logger: logger
                )
            }
            if let membership { context.service.attach(membership) }
            let runningURI = global.resolvedURI
            let reload = ReloadOnHangup(notifier: notifier, logger: logger) { [self] in
                let reread = try currentSettings().loadGateways(logger: logger)
                var notes = frontEnds.reloadGateways(reread.configurations)
                // Members judge this host by its keys: tell them the new ones.
                membership?.update(Self.hello(of: reread.configurations))
                if let uri = reread.uri, uri != runningURI {
                    notes.append("the libvirt URI changed to \(uri): restart to apply")
                }
                return notes
            }
            var summary =
                "fencegate serving \(frontEnds.httpURL)\(settings.redfish ? " (Redfish at /redfish/v1)" : ""): "
            summary += "hypervisor \(runningURI)"
            do {
                let count = try await context.service.domains().count
                summary += " (\(count) domain\(count == 1 ? "" : "s"))"
            } catch {
                summary += " (unreachable for now: \(error); retrying every \(settings.healthInterval) s)"
            }
            // Ready is said once the group runs, so that SIGTERM already stops it gracefully.
            let ready = ReadyNotice(
                notifier: notifier,
                logger: logger,
                line: summary + ", audit log \(context.store.path)\(frontEnds.gatewaySummary). Stop with Ctrl-C.",
                status: summary,
                metadata: [
                    "http.listen": "\(frontEnds.httpURL)", "hypervisor.uri": "\(runningURI)",
                    "audit.path": "\(context.store.path)",
                ]
            )
            let watch = HypervisorWatch(
                service: context.service,
                interval: .seconds(settings.healthInterval),
                logger: logger
            )
            // Shut down in reverse order: systemd hears STOPPING first, and the watchdog is fed until the end.
            let retention = AuditRetentionPasses(service: context.service, logger: logger)
            let services: [any Service] =
                [SystemdWatchdog(notifier: notifier), watch] + (retention.isNeeded ? [retention] : [])
                + (membership.map { [$0] } ?? []) + frontEnds.services
                + [reload, ready, StoppingNotice(notifier: notifier)]
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: services.map { .init(service: $0) },
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )

            var stoppedBy: (any Error)?
            do {
                try await group.run()
            } catch {
                stoppedBy = error
            }
            // Refusals still only counted (the audit rate limit) get their summary rows before the end, and
            // every commit is synced, on an error too.
            await context.service.recordPendingRefusals()
            if let stoppedBy { throw stoppedBy }
            logger.notice("stopped")
        }
    }
}

/// Checks the hypervisor connection periodically, so a dropped connection is re-opened before the next
/// fence request needs it, and logs each change between reachable and unreachable once.
struct HypervisorWatch: Service {
    let service: FenceService
    let interval: Duration
    let logger: Logger

    func run() async throws {
        var reachable: Bool?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await service.monitor()
                if reachable != true {
                    logger.notice("hypervisor reachable", metadata: ["hypervisor.uri": "\(service.hypervisorURI)"])
                }
                reachable = true
            } catch {
                if reachable != false {
                    logger.warning("hypervisor unavailable", metadata: ["error": "\(error)"])
                }
                reachable = false
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

extension Double {
    /// The value as a help text shows a default, in every locale alike: "60", "0.5" (no ".0", no grouping). Not
    /// `formatted()`, which starts ICU's number formatting on every parse of the command line.
    fileprivate var helpText: String {
        rounded() == self && abs(self) < 1e15 ? String(Int64(self)) : String(self)
    }
}
