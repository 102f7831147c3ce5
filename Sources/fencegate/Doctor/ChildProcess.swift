import FoundationEssentials
import Glibc

/// A program doctor runs (such as `nft list ruleset`), started with posix_spawn and reaped with `waitpid`.
///
/// Not Foundation's `Process`: its end was sometimes not noticed under load in the test suite (`isRunning`
/// stayed true for 10 s after `nft`, which takes milliseconds, had exited), and its launch copies the parent's
/// descriptors. Here the child gets only /dev/null as input and two files for its output.
struct ChildProcess {
    /// How a run ended.
    enum Ending: Equatable {
        case exited(Int32)
        case killedBySignal(Int32)
        /// Still running at the deadline: killed (SIGKILL) and reaped.
        case timedOut
    }

    /// Runs `path` with `arguments`, standard output to `outputPath` and standard error to `errorPath`,
    /// polling for its end every 10 ms until `timeout`.
    static func run(
        _ path: String,
        _ arguments: [String],
        outputPath: String,
        errorPath: String,
        timeout: Duration
    ) async throws -> Ending {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw CLIFailure.other("cannot run \(path): \(String(cString: strerror(spawned)))")
        }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var status: Int32 = 0
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0 && errno != EINTR {
                throw CLIFailure.other("cannot wait for \(path): \(String(cString: strerror(errno)))")
            }
            if clock.now >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return .timedOut
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        // The wait status, decoded as <sys/wait.h>'s macros do.
        let signal = status & 0x7F
        return signal == 0 ? .exited((status >> 8) & 0xFF) : .killedBySignal(signal)
    }
}
