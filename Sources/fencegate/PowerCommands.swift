import ArgumentParser
import FenceCore
import FoundationEssentials
import Glibc
import Logging

/// Options shared by `status`, `on`, `off` and `reboot`.
struct PowerOptions: ParsableArguments {
    @Argument(help: "The domain's name or UUID.")
    var domain: String

    @Option(name: .long, help: "Give up after this many seconds (reported as a failure, exit 7).")
    var timeout: Double?

    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if domain.isEmpty { throw ValidationError("the domain name must not be empty") }
        if let timeout, !(timeout > 0 && timeout <= 3600) {
            throw ValidationError("--timeout must be more than 0 and at most 3600 seconds")
        }
    }
}

/// Runs one audited action through the fence service and prints its result.
func runPowerAction(_ action: FenceAction, _ options: PowerOptions, _ global: GlobalOptions) async throws {
    let logger = global.makeLogger(defaultLevel: .warning)
    try await reportingFailures {
        let context = try await ServiceContext.open(global, logger: logger)
        let request = FenceRequest(
            action: action,
            target: DomainTarget(options.domain),
            origin: RequestOrigin(frontEnd: .cli, requester: currentUserDescription()),
            timeout: options.timeout.map { .seconds($0) }
        )
        let outcome = try await context.service.perform(request)
        if options.json {
            print(try JSONText.encode(OutcomeJSON(outcome)))
        } else {
            var line = "\(outcome.domain.name): \(outcome.power.rawValue)"
            if let note = outcome.note { line += " (\(note))" }
            line += " [operation \(outcome.operationID), \(formatDuration(outcome.duration))]"
            print(line)
        }
        if action == .status, outcome.power == .off { throw ExitCode(ExitStatus.off) }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print whether a domain is on or off (exit 0 on, 2 off); audited."
    )
    @OptionGroup var options: PowerOptions
    @OptionGroup var global: GlobalOptions
    func run() async throws { try await runPowerAction(.status, options, global) }
}

struct On: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a domain (already running is success); audited."
    )
    @OptionGroup var options: PowerOptions
    @OptionGroup var global: GlobalOptions
    func run() async throws { try await runPowerAction(.on, options, global) }
}

struct Off: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Force a domain off at once, like pulling the plug (already off is success); audited."
    )
    @OptionGroup var options: PowerOptions
    @OptionGroup var global: GlobalOptions
    func run() async throws { try await runPowerAction(.off, options, global) }
}

struct Reboot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Force a domain off, wait until it is off, start it again; a domain that was off stays off. Audited."
    )
    @OptionGroup var options: PowerOptions
    @OptionGroup var global: GlobalOptions
    func run() async throws { try await runPowerAction(.reboot, options, global) }
}

/// "alice", or "root (sudo from alice)": the requester recorded for CLI operations.
func currentUserDescription() -> String {
    let uid = geteuid()
    let name = getpwuid(uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "uid \(uid)"
    if let sudoUser = ProcessInfo.processInfo.environment["SUDO_USER"], !sudoUser.isEmpty, sudoUser != name {
        return "\(name) (sudo from \(sudoUser))"
    }
    return name
}
