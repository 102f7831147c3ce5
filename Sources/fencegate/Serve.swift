import ArgumentParser
import FenceAPI
import FenceCore
import Foundation
import Logging
import MulticastGateway
import ServiceLifecycle
import Store
import UnixSignals

/// `fencegate serve`: runs the fence service and its HTTP API until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the fence service with its HTTP API until SIGTERM or SIGINT.")

    @Option(help: "Address and port of the HTTP API: 127.0.0.1:8786, [::1]:8786, 0.0.0.0:8443 (port 0: any free port).")
    var listen = ListenAddress.default.description

    @Option(help: "PEM certificate (chain) for HTTPS.") var tlsCert: String?
    @Option(help: "PEM private key for HTTPS.") var tlsKey: String?

    @Flag(help: "Allow plain HTTP on a non-loopback address (bearer tokens then cross the network in clear text).")
    var allowPlainHttp = false

    @Option(help: "Largest request body accepted, in bytes (larger: 413).") var maxBodyBytes = 64 * 1024
    @Option(help: "Most simultaneous HTTP connections.") var maxConnections: UInt32 = 256
    @Option(help: "Most simultaneous HTTP connections from one client address (0: no limit).")
    var maxConnectionsPerAddress: UInt32 = 64
    @Option(help: "Seconds an idle HTTP connection is kept.") var connectionTimeout: UInt32 = 30
    @Option(help: "libmicrohttpd threads accepting and parsing requests.") var httpThreads: UInt32 = 2

    @Option(help: "Seconds a fence operation may take, lock wait included, before it fails as timed out.")
    var operationTimeout: Double = 60

    @Option(help: "Seconds between hypervisor connection checks (a dropped connection is re-opened).")
    var healthInterval: Double = 5

    @Option(
        help: ArgumentHelp(
            "Run in place of fence_virtd: read its configuration file as is (listener, key file, hash, auth, groups, libvirt URI).",
            discussion: "The fence_xvm gateway options below are then taken from the file and must not be given.",
            valueName: "path"))
    var fenceVirtConf: String?

    @OptionGroup(title: "fence_xvm gateway") var gateway: GatewayOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if fenceVirtConf != nil,
            gateway.multicast || gateway.tcpListen != nil || !gateway.group.isEmpty || gateway.multicastInterface != nil
        {
            throw ValidationError(
                "--fence-virt-conf sets the gateway from fence_virt.conf; drop --multicast, --multicast-interface, --tcp-listen and --group")
        }
        guard let address = ListenAddress(listen) else {
            throw ValidationError("--listen must be a numeric IPv4 or IPv6 address with an optional port, e.g. 127.0.0.1:8786")
        }
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        if tlsCert == nil, !address.isLoopback, !allowPlainHttp {
            throw ValidationError(
                "refusing plain HTTP on \(address): give --tls-cert and --tls-key, or --allow-plain-http")
        }
        guard healthInterval >= 0.1 && healthInterval <= 3600 else {
            throw ValidationError("--health-interval must be 0.1 to 3600 seconds")
        }
        guard operationTimeout > 0 && operationTimeout <= 3600 else {
            throw ValidationError("--operation-timeout must be more than 0 and at most 3600 seconds")
        }
        guard (1...(64 * 1024 * 1024)).contains(maxBodyBytes) else {
            throw ValidationError("--max-body-bytes must be 1 to 67108864")
        }
        guard maxConnections >= 1, (1...64).contains(httpThreads), connectionTimeout >= 1 else {
            throw ValidationError("--max-connections, --http-threads (1…64) and --connection-timeout must be positive")
        }
    }

    func run() async throws {
        let logger = global.makeLogger(defaultLevel: .info)
        try await reportingFailures {
            var global = self.global
            let gatewayConfiguration = try gatewaySettings(global: &global, logger: logger)
            var serviceConfiguration = FenceService.Configuration()
            serviceConfiguration.operationTimeout = .milliseconds(Int64(operationTimeout * 1000))
            let context = try await ServiceContext.open(global, configuration: serviceConfiguration, logger: logger)
            let api = FenceHTTPAPI(service: context.service, logger: logger)
            let server: HTTPServer
            do {
                server = try HTTPServer(configuration: try httpConfiguration(), logger: logger) { request in
                    await api.handle(request)
                }
            } catch let error as HTTPServerError {
                throw CLIFailure.other(error.description)
            }
            let scheme = tlsCert == nil ? "http" : "https"
            var bound = ListenAddress(listen)!
            bound.port = server.port

            let notifier = SystemdNotifier()
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            var gatewaySummary = ""
            var fenceXVMGateway: FenceXVMGateway?
            if let gatewayConfiguration {
                let fenceXVM: FenceXVMGateway
                do {
                    fenceXVM = try FenceXVMGateway(service: context.service, configuration: gatewayConfiguration, logger: logger)
                } catch let error as GatewayError {
                    throw CLIFailure.other(error.description)
                }
                fenceXVMGateway = fenceXVM
                services.append(.init(service: GatewayFrontEnd(gateway: fenceXVM, gracePeriod: serviceConfiguration.operationTimeout + .seconds(15))))
                if let multicast = fenceXVM.configuration.multicast {
                    gatewaySummary += "; fence_xvm on \(multicast.group):\(multicast.port)"
                    if let interface = multicast.interface { gatewaySummary += " via \(interface)" }
                }
                if let tcp = fenceXVM.tcpAddress { gatewaySummary += "; fence_virt on tcp \(tcp)" }
            }
            let watch = HypervisorWatch(
                service: context.service, interval: .milliseconds(Int64(healthInterval * 1000)), logger: logger)
            let http = HTTPFrontEnd(server: server, gracePeriod: serviceConfiguration.operationTimeout + .seconds(5))
            let runningURI = global.resolvedURI
            let reload = ReloadOnHangup(notifier: notifier, logger: logger) { [self, fenceXVMGateway] in
                guard let fenceXVMGateway else { return ["no fence_xvm gateway runs: nothing to reload"] }
                var reread = self.global
                guard let settings = try gatewaySettings(global: &reread, logger: logger) else { return [] }
                var notes = fenceXVMGateway.reload(settings)
                if reread.resolvedURI != runningURI {
                    notes.append("the libvirt URI changed to \(reread.resolvedURI): restart to apply")
                }
                return notes
            }
            // Shut down in reverse order: systemd hears STOPPING first, and the watchdog is fed until the end.
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: SystemdWatchdog(notifier: notifier)), .init(service: watch), .init(service: http)]
                        + services + [.init(service: reload), .init(service: StoppingNotice(notifier: notifier))],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger))

            var summary = "fencegate serving \(scheme)://\(bound): hypervisor \(global.resolvedURI)"
            do {
                let count = try await context.service.domains().count
                summary += " (\(count) domain\(count == 1 ? "" : "s"))"
            } catch {
                summary += " (unreachable for now: \(error); retrying every \(healthInterval) s)"
            }
            print(summary + ", audit log \(context.store.path)\(gatewaySummary). Stop with Ctrl-C.")
            fflush(nil)  // stdout is usually a file or the journal here, where it would stay buffered
            notifier?.notify(["READY=1", "MAINPID=\(getpid())", "STATUS=\(summary)"])
            logger.notice(
                "ready",
                metadata: [
                    "http.listen": "\(scheme)://\(bound)", "hypervisor.uri": "\(global.resolvedURI)",
                    "audit.path": "\(context.store.path)",
                ])
            try await group.run()
            logger.notice("stopped")
        }
    }

    /// The gateway's settings: from fence_virt.conf (which may also set the libvirt URI in `global`), else from
    /// the options; nil when no listener is enabled.
    private func gatewaySettings(global: inout GlobalOptions, logger: Logger) throws -> GatewayConfiguration? {
        guard let fenceVirtConf else { return gateway.enabled ? try gateway.configuration(logger: logger) : nil }
        let file: FenceVirtdConfiguration
        do {
            file = try FenceVirtdConfiguration(contentsOf: fenceVirtConf)
        } catch {
            throw CLIFailure.other(error.description)
        }
        for note in file.ignored { logger.warning("\(note)") }
        if let uri = file.libvirtURI {
            if let given = global.uri, given != uri {
                throw CLIFailure.other("--uri \(given) contradicts \(fenceVirtConf), whose backends/libvirt/uri is \(uri)")
            }
            global.uri = uri
        }
        var configuration = file.gateway
        try GatewayOptions.loadKey(into: &configuration, from: file.keyFile, logger: logger)
        return configuration
    }

    private func httpConfiguration() throws -> HTTPServerConfiguration {
        var configuration = HTTPServerConfiguration()
        configuration.listen = ListenAddress(listen)!
        configuration.maximumBodyBytes = maxBodyBytes
        configuration.maximumConnections = maxConnections
        configuration.maximumConnectionsPerAddress = maxConnectionsPerAddress
        configuration.connectionTimeoutSeconds = connectionTimeout
        configuration.threads = httpThreads
        if let tlsCert, let tlsKey {
            do {
                configuration.tls = (
                    try String(contentsOfFile: tlsCert, encoding: .utf8), try String(contentsOfFile: tlsKey, encoding: .utf8)
                )
            } catch {
                throw CLIFailure.other("cannot read the TLS certificate or key: \(error.localizedDescription)")
            }
        }
        return configuration
    }
}

/// The HTTP server as a lifecycle service: on graceful shutdown it stops accepting, lets in-flight requests
/// finish (each is bounded by the operation timeout), then stops.
struct HTTPFrontEnd: Service {
    let server: HTTPServer
    let gracePeriod: Duration

    func run() async throws {
        try? await gracefulShutdown()
        await server.shutdown(gracePeriod: gracePeriod)
    }
}

/// The fence_xvm gateway as a lifecycle service: on graceful shutdown it stops reading requests and lets the
/// ones being answered finish.
struct GatewayFrontEnd: Service {
    let gateway: FenceXVMGateway
    let gracePeriod: Duration

    func run() async throws {
        gateway.start()
        try? await gracefulShutdown()
        await gateway.shutdown(gracePeriod: gracePeriod)
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
                    logger.notice("hypervisor reachable", metadata: ["hypervisor.uri": "\(service.hypervisor.uri)"])
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
