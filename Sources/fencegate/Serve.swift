import ArgumentParser
import Foundation
import FenceCore
import Logging
import ServiceLifecycle
import Store
import UnixSignals

/// `fencegate serve`: runs the fence service until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the fence service (front ends attach to it) until SIGTERM or SIGINT.")

    @Option(help: "Seconds between hypervisor connection checks (a dropped connection is re-opened).")
    var healthInterval: Double = 5

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard healthInterval >= 0.1 && healthInterval <= 3600 else {
            throw ValidationError("--health-interval must be 0.1 to 3600 seconds")
        }
    }

    func run() async throws {
        let logger = global.makeLogger(defaultLevel: .info)
        try await reportingFailures {
            let context = try await ServiceContext.open(global, logger: logger)
            let watch = HypervisorWatch(
                service: context.service, interval: .milliseconds(Int64(healthInterval * 1000)), logger: logger)
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: watch)],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger))
            var summary = "fencegate serving: hypervisor \(global.resolvedURI)"
            do {
                let count = try await context.service.domains().count
                summary += " (\(count) domain\(count == 1 ? "" : "s"))"
            } catch {
                summary += " (unreachable for now: \(error); retrying every \(healthInterval) s)"
            }
            print(summary + ", audit log \(context.store.path). Stop with Ctrl-C.")
            // A daemon's stdout is usually a file or the journal, where it would otherwise stay buffered.
            fflush(nil)
            logger.notice("ready", metadata: ["hypervisor.uri": "\(global.resolvedURI)", "audit.path": "\(context.store.path)"])
            try await group.run()
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
