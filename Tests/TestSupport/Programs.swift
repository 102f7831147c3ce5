public import Foundation

/// What a program printed and returned.
public struct ProgramResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs a program to completion off the cooperative pool, in `directory` if given.
///
/// Output goes to temporary files, not pipes: swift-corelibs-foundation reads pipes with `try!` and traps on
/// EINTR, which many children exiting at once (SIGCHLD) can cause.
public func runProgram(
    _ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String]? = nil,
    standardInput: String? = nil
) async throws -> ProgramResult {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            do {
                let scratch = try TemporaryDirectory()
                let outputPath = scratch.file("stdout")
                let errorPath = scratch.file("stderr")
                let inputPath = scratch.file("stdin")
                try Data((standardInput ?? "").utf8).write(to: URL(fileURLWithPath: inputPath))
                for path in [outputPath, errorPath] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = arguments
                if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
                if let environment { process.environment = environment }
                let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
                let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
                let input = standardInput == nil ? FileHandle.nullDevice : try FileHandle(forReadingFrom: URL(fileURLWithPath: inputPath))
                process.standardOutput = output
                process.standardError = errors
                process.standardInput = input
                try process.launchSerialized()
                process.waitUntilExit()
                try? output.close()
                try? errors.close()
                let outputText = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
                let errorText = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
                continuation.resume(
                    returning: ProgramResult(status: process.terminationStatus, stdout: outputText, stderr: errorText))
            } catch {
                continuation.resume(throwing: error)
            }
        }.start()
    }
}

/// Runs blocking `body` (sockets, waits) on a thread of its own, never on Swift's cooperative pool, which
/// in-process servers under test need free.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

extension Process {
    private static let launchLock = NSLock()
    /// The environment as the test process started, taken once.
    public static let initialEnvironment = ProcessInfo.processInfo.environment

    /// `run()`, one launch at a time, always with an explicit environment: swift-corelibs-foundation's
    /// `Process.run()` crashed (a bad memcpy inside it) when it copied the live `environ` while many threads
    /// launched children at once.
    public func launchSerialized() throws {
        if environment == nil { environment = Self.initialEnvironment }
        Self.launchLock.lock()
        defer { Self.launchLock.unlock() }
        try run()
    }
}
