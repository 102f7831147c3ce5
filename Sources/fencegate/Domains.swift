import ArgumentParser
import FenceCore
import Logging

/// `fencegate domains`: every defined domain with its state.
struct Domains: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every defined domain with its UUID, state and power."
    )

    @Flag(name: .long, help: "Print the list as JSON.")
    var json = false

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let logger = global.makeLogger(defaultLevel: .warning)
        try await reportingFailures {
            let context = try await ServiceContext.open(global, logger: logger)
            let domains = try await context.service.domains()
            if json {
                print(try JSONText.encode(domains.map(DomainJSON.init)))
            } else {
                print(
                    Table.render(
                        header: ["NAME", "UUID", "STATE", "POWER", "PERSISTENT"],
                        rows: domains.map {
                            [$0.name, $0.uuid, $0.state.rawValue, $0.power.rawValue, $0.isPersistent ? "yes" : "no"]
                        }
                    )
                )
            }
        }
    }
}
