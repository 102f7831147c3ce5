import Foundation
import TestSupport

/// A `fencegate serve` process on 127.0.0.1 (any free port), stopped with SIGTERM when done.
struct RunningServer {
    let fencegate: FencegateBinary
    let serve: FencegateBinary.Running
    let baseURL: String

    /// Starts `fencegate serve ARGUMENTS --listen 127.0.0.1:0` and waits until it reports its address.
    static func start(_ fencegate: FencegateBinary, _ arguments: [String]) async throws -> RunningServer {
        let logLevel = arguments.contains("--log-level") ? [] : ["--log-level", "warning"]
        let serve = try fencegate.start(["serve", "--listen", "127.0.0.1:0"] + logLevel + arguments)
        do {
            try await waitUntil("serve reports readiness") {
                serve.stdout.contains("fencegate serving") || !serve.process.isRunning
            }
        } catch {
            kill(serve.process.processIdentifier, SIGKILL)
            throw error
        }
        guard serve.process.isRunning,
            let range = serve.stdout.range(of: #"https?://127\.0\.0\.1:[0-9]+"#, options: .regularExpression)
        else {
            throw ConditionNeverMet(description: "serve did not start: \(serve.stdout) \(serve.stderr)")
        }
        return RunningServer(fencegate: fencegate, serve: serve, baseURL: String(serve.stdout[range]))
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    @discardableResult
    func stop() async throws -> Int32 {
        let process = serve.process
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        try await waitUntil("serve exits") { !process.isRunning }
        return process.terminationStatus
    }
}

/// A program from the Python tools that `scripts/test` installs (schemathesis, openapi-spec-validator):
/// `$FENCEGATE_PYTHON_TOOLS/NAME`, else `.build-venv/bin/NAME` in the package.
func pythonTool(_ name: String) throws -> String {
    let directory = ProcessInfo.processInfo.environment["FENCEGATE_PYTHON_TOOLS"] ?? packageRoot + "/.build-venv/bin"
    let path = directory + "/" + name
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw ConditionNeverMet(description: "\(path) is missing: run scripts/test, which installs it")
    }
    return path
}
