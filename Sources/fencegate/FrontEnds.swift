import FenceAPI
import FenceCore
import Logging
import MulticastGateway
import ServiceLifecycle

/// The front ends `serve` runs, built from its settings: the HTTP server (REST, and Redfish if enabled) and
/// one fence_xvm gateway per configured gateway. Each is a lifecycle service; a new front end is built here
/// and listed in `services`.
struct FrontEnds {
    let http: HTTPServer
    let gateways: [FenceXVMGateway]
    /// The HTTP API's address as bound: `http://127.0.0.1:8786`.
    let httpURL: String

    /// Binds every listener (so that a taken address fails before anything is announced).
    /// - Throws: `CLIFailure` naming the listener that could not be bound.
    init(
        settings: ServeSettings,
        gateways configurations: [GatewayConfiguration],
        service: FenceService,
        logger: Logger
    ) throws {
        let api = FenceHTTPAPI(service: service, logger: logger, redfish: settings.redfish)
        do {
            http = try HTTPServer(
                configuration: try settings.httpConfiguration(),
                logger: logger,
                isCredentialed: service.credentialedClients.contains,
                connectionRefused: service.metrics.connectionRefusedWithoutCredentials
            ) { request in
                await api.handle(request)
            }
        } catch let error as HTTPServerError {
            throw CLIFailure.other(error.description)
        }
        var bound = settings.listen
        bound.port = http.port
        httpURL = "\(settings.tlsCert == nil ? "http" : "https")://\(bound)"

        var gateways: [FenceXVMGateway] = []
        let several = configurations.count > 1
        for (index, configuration) in configurations.enumerated() {
            // With several gateways, each one's log lines and errors name it as the configuration file does.
            var gatewayLogger = logger
            if several { gatewayLogger[metadataKey: "gateway"] = "gateway[\(index)]" }
            do {
                gateways.append(
                    try FenceXVMGateway(service: service, configuration: configuration, logger: gatewayLogger)
                )
            } catch let error as GatewayError {
                throw CLIFailure.other(several ? "gateway[\(index)]: \(error.description)" : error.description)
            }
        }
        self.gateways = gateways
    }

    /// The front ends as lifecycle services, the HTTP server first.
    var services: [any Service] { [http] + gateways }

    /// What the gateways listen on, for the start-up line: `; fence_xvm on 225.0.0.12:1229 via virbr0`.
    var gatewaySummary: String {
        gateways.map { gateway in
            var summary = ""
            if let multicast = gateway.configuration.multicast {
                summary += "; fence_xvm on \(multicast.group):\(multicast.port)"
                if let interface = multicast.interface { summary += " via \(interface)" }
            }
            if let tcp = gateway.tcpAddress { summary += "; fence_virt on tcp \(tcp)" }
            return summary
        }.joined()
    }

    /// Gives each gateway its re-read settings (SIGHUP); returns notes on what was not applied.
    func reloadGateways(_ configurations: [GatewayConfiguration]) -> [String] {
        guard !gateways.isEmpty else { return ["no fence_xvm gateway runs: nothing to reload"] }
        guard configurations.count == gateways.count else {
            return ["the gateways changed from \(gateways.count) to \(configurations.count): restart to apply"]
        }
        var notes: [String] = []
        for (index, gateway) in gateways.enumerated() {
            let gatewayNotes = gateway.reload(configurations[index])
            notes += gateways.count > 1 ? gatewayNotes.map { "gateway[\(index)]: \($0)" } : gatewayNotes
        }
        return notes
    }
}
