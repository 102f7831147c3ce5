public import Foundation

/// What one run of the built `fencegate` printed and returned.
public typealias CommandResult = ProgramResult

/// Runs the `fencegate` executable that `swift test` built next to the test bundle.
public struct FencegateBinary: Sendable {
    /// Each test gets its own audit file (passed as $FENCEGATE_DATABASE unless overridden).
    public let directory: TemporaryDirectory
    public var database: String { directory.file("audit.db") }

    public init() throws {
        directory = try TemporaryDirectory()
    }

    public static let url: URL = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("fencegate")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return URL(fileURLWithPath: packageRoot).appendingPathComponent(".build/debug/fencegate")
    }()

    public var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["FENCEGATE_DATABASE"] = database
        environment["FENCEGATE_URI"] = nil
        return environment
    }

    /// A started `fencegate` process whose stdout and stderr go to files.
    public struct Running: @unchecked Sendable {
        public let process: SpawnedProcess
        public let stdoutPath: String
        public let stderrPath: String

        public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
        public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    }

    /// Starts `fencegate ARGUMENTS` without waiting for it.
    public func start(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Running {
        let name = UUID().uuidString
        let stdoutPath = directory.file("\(name).out")
        let stderrPath = directory.file("\(name).err")
        let process = try SpawnedProcess(
            Self.url.path,
            arguments,
            environment: environment.merging(extra) { $1 },
            standardOutput: stdoutPath,
            standardError: stderrPath
        )
        return Running(process: process, stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    /// Runs `fencegate ARGUMENTS` to completion, waiting on a thread of its own: a test must never block
    /// Swift's cooperative pool, which the in-process services of the tests running beside it need.
    public func run(_ arguments: [String], environment extra: [String: String] = [:]) async throws -> CommandResult {
        try await onOwnThread { [self] in
            let running = try start(arguments, environment: extra)
            running.process.waitUntilExit()
            return ProgramResult(
                status: running.process.terminationStatus,
                stdout: running.stdout,
                stderr: running.stderr
            )
        }
    }

    /// Runs `fencegate ARGUMENTS --json` and decodes its output.
    public func json(_ arguments: [String]) async throws -> Any {
        let result = try await run(arguments + ["--json"])
        guard result.status == 0 || result.status == 2 else {
            throw ConditionNeverMet(description: "fencegate \(arguments) exited \(result.status): \(result.stderr)")
        }
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
    }
}
