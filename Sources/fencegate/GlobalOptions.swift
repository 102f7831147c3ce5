import ArgumentParser
import FoundationEssentials
import Glibc
import Logging

/// Options every subcommand takes: where the hypervisor and the audit log are, and how much to log.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "libvirt URI of the hypervisor (default: $FENCEGATE_URI, else qemu:///system).",
            discussion:
                "test:///default is libvirt's built-in test driver: a demo world that lives inside one process.",
            valueName: "uri"
        )
    )
    var uri: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Path of the SQLite audit log (default: $FENCEGATE_DATABASE, else /var/lib/fencegate/audit.db for root, ~/.local/state/fencegate/audit.db otherwise).",
            valueName: "path"
        )
    )
    var database: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: LogLevelArgument?

    @Option(
        name: .long,
        help: "Log lines on stderr: text (readable) or json (one object per line, for journald or ELK)."
    )
    var logFormat: LogFormat?

    /// The URI in effect.
    var resolvedURI: String {
        uri ?? ProcessInfo.processInfo.environment["FENCEGATE_URI"] ?? "qemu:///system"
    }

    /// The database path in effect.
    var resolvedDatabase: String {
        if let database { return database }
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["FENCEGATE_DATABASE"], !path.isEmpty { return path }
        if geteuid() == 0 { return "/var/lib/fencegate/audit.db" }
        let stateHome =
            environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (FileManager.default.homeDirectoryForCurrentUser.path + "/.local/state")
        return stateHome + "/fencegate/audit.db"
    }

    /// Bootstraps swift-log once for this process (stderr) and returns the root logger.
    /// `configuredLevel` and `configuredFormat` come from a configuration file; the options override them.
    func makeLogger(
        defaultLevel: Logger.Level,
        configuredLevel: Logger.Level? = nil,
        configuredFormat: LogFormat? = nil
    ) -> Logger {
        let level = logLevel?.level ?? configuredLevel ?? defaultLevel
        switch logFormat ?? configuredFormat ?? .text {
        case .text:
            LoggingSystem.bootstrap { label in TextLogHandler(label: label, logLevel: level) }
        case .json:
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, logLevel: level) }
        }
        return Logger(label: "fencegate")
    }
}

/// How log lines are written.
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// A `Logger.Level` as a command-line argument.
struct LogLevelArgument: ExpressibleByArgument {
    let level: Logger.Level

    init?(argument: String) {
        guard let level = Logger.Level(rawValue: argument.lowercased()) else { return nil }
        self.level = level
    }

    static var allValueStrings: [String] { Logger.Level.allCases.map(\.rawValue) }
}
