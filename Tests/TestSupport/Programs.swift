import CTestSupport
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
/// Spawned with posix_spawn (`fg_spawn`), not Foundation's `Process`: `Process.run()` copies a whole
/// `d_name` per /proc/self/fd entry and read past the end of its buffer when the test process held many
/// sockets, and its pipes trap on EINTR. Output goes to temporary files.
public func runProgram(
    _ executable: String,
    _ arguments: [String],
    in directory: String? = nil,
    environment: [String: String]? = nil,
    standardInput: String? = nil
) async throws -> ProgramResult {
    try await onOwnThread {
        let scratch = try TemporaryDirectory()
        let outputPath = scratch.file("stdout")
        let errorPath = scratch.file("stderr")
        var inputPath: String?
        if let standardInput {
            inputPath = scratch.file("stdin")
            try Data(standardInput.utf8).write(to: URL(fileURLWithPath: inputPath!))
        }
        let pid = try spawnProgram(
            executable,
            arguments,
            in: directory,
            environment: environment,
            standardInput: inputPath,
            standardOutput: outputPath,
            standardError: errorPath
        )
        let status = fg_wait(pid)
        let outputText = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let errorText = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        return ProgramResult(status: status, stdout: outputText, stderr: errorText)
    }
}

/// Starts a program with posix_spawn: no signal blocked, default signal handling, descriptors above 2
/// closed, standard input from `standardInput` (else /dev/null), output to the given files. Returns its PID;
/// reap it with `waitForExit(_:)`.
public func spawnProgram(
    _ executable: String,
    _ arguments: [String],
    in directory: String? = nil,
    environment: [String: String]? = nil,
    standardInput: String? = nil,
    standardOutput: String = "/dev/null",
    standardError: String = "/dev/null"
) throws -> Int32 {
    let variables = (environment ?? Process.initialEnvironment).map { "\($0.key)=\($0.value)" }
    var pid: pid_t = 0
    let error = withCStrings([executable] + arguments) { argv in
        withCStrings(variables) { envp in
            fg_spawn(executable, argv, envp, directory, standardInput, standardOutput, standardError, &pid)
        }
    }
    guard error == 0 else {
        throw ConditionNeverMet(description: "cannot start \(executable): \(String(cString: strerror(error)))")
    }
    return pid
}

/// Blocks until the child `pid` exits; its exit status, or the signal that ended it.
public func waitForExit(_ pid: Int32) -> Int32 { fg_wait(pid) }

/// Calls `body` with `strings` as a NULL-terminated C array (argv, envp style).
private func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> T) -> T {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Runs blocking `body` (sockets, waits) on a thread of its own, never on Swift's cooperative pool, which
/// in-process servers under test need free.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

extension Process {
    /// The environment as the test process started, taken once: what spawned programs get by default.
    public static let initialEnvironment = ProcessInfo.processInfo.environment
}
