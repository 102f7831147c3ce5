import ArgumentParser
import FenceCore
import FoundationEssentials
import Glibc

/// A failure reported as one line on stderr and a documented exit code.
enum CLIFailure: Error {
    case fence(FenceError)
    case auditUnavailable(String)
    /// A configuration file that cannot be used (the message names the file and line).
    case configuration(String)
    case other(String)

    /// The exit code, as documented in the README and `fencegate --help`.
    var exitCode: Int32 {
        switch self {
        case .fence(let error):
            switch error {
            case .operationFailed, .domainBusy, .notRunning, .refused, .unauthenticated, .requesterFenced,
                .requesterFencedInCluster,
                .clusterUnavailable:
                return ExitStatus.failed
            case .invalidTarget: return ExitStatus.badArguments
            case .domainNotFound: return ExitStatus.domainNotFound
            case .hypervisorUnavailable: return ExitStatus.hypervisorUnavailable
            case .auditUnavailable, .auditQueryStopped: return ExitStatus.auditUnavailable
            case .timedOut: return ExitStatus.timedOut
            }
        case .auditUnavailable: return ExitStatus.auditUnavailable
        case .configuration: return ExitStatus.configuration
        case .other: return ExitStatus.failed
        }
    }

    var message: String {
        switch self {
        case .fence(let error): return error.description
        case .auditUnavailable(let message): return "audit log unavailable: \(message)"
        case .configuration(let message): return message
        case .other(let message): return message
        }
    }
}

/// Exit codes of `fencegate`.
enum ExitStatus {
    static let success: Int32 = 0
    static let failed: Int32 = 1
    /// `status` of a domain that is off (as fence agents do).
    static let off: Int32 = 2
    static let domainNotFound: Int32 = 4
    static let hypervisorUnavailable: Int32 = 5
    static let auditUnavailable: Int32 = 6
    static let timedOut: Int32 = 7
    /// Arguments that cannot be used (as argument-parser's validation failures).
    static let badArguments: Int32 = 64
    /// A configuration file with an error (sysexits' EX_CONFIG).
    static let configuration: Int32 = 78
}

/// Runs `body`; a `CLIFailure` or `FenceError` becomes "fencegate: error: …" on stderr and its exit code.
func reportingFailures(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as CLIFailure {
        printError(failure.message)
        throw ExitCode(failure.exitCode)
    } catch let error as FenceError {
        let failure = CLIFailure.fence(error)
        printError(failure.message)
        throw ExitCode(failure.exitCode)
    }
}

func printError(_ message: String) {
    write("fencegate: error: \(message)\n", to: STDERR_FILENO)
}
