import Foundation

/// A long-running program a test starts and keeps a handle to (a server, a namespace helper): spawned with
/// posix_spawn (`fg_spawn`: no signal blocked, descriptors above 2 closed) and reaped by a thread of its own.
///
/// Not Foundation's `Process`: its `run()` lists /proc/self/fd and copied past the end of a buffer when the
/// test process held many descriptors; the suite crashed there (SIGSEGV in `Process.run()`).
public final class SpawnedProcess: @unchecked Sendable {
    public let processIdentifier: Int32
    private let lock = NSLock()
    /// The exit status, or the signal that ended it; nil while it runs.
    private var status: Int32?

    /// Starts `executable` with `arguments` (and `environment`, by default the test process's own), standard
    /// input from /dev/null and output to the given files.
    public init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        standardOutput: String,
        standardError: String
    ) throws {
        let pid = try spawnProgram(
            executable,
            arguments,
            environment: environment,
            standardOutput: standardOutput,
            standardError: standardError
        )
        processIdentifier = pid
        Thread { [self] in
            let status = waitForExit(pid)
            lock.withLock { self.status = status }
        }.start()
    }

    /// True until the program has exited and been reaped.
    public var isRunning: Bool { lock.withLock { status == nil } }

    /// The exit status, or the number of the signal that ended it (as `Process.terminationStatus`); 0 while
    /// it runs.
    public var terminationStatus: Int32 { lock.withLock { status ?? 0 } }

    /// Blocks until the program has exited: call it on a thread of its own, never on Swift's cooperative pool.
    public func waitUntilExit() {
        while isRunning { usleep(5_000) }
    }
}
