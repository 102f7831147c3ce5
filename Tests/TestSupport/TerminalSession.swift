import Foundation

/// A program at a real terminal, as a person would use it: a detached tmux session on a tmux server of its
/// own (`tmux -S`, its socket in a temporary directory, so no other tmux is touched), typed into with
/// `send-keys` and read with `capture-pane`.
///
/// When the program exits, the pane prints `[exit STATUS]` and stays, so its last screen can be read.
/// `close()` (also run by `deinit`) kills the session's server, which ends the program if it still runs.
public final class TerminalSession: @unchecked Sendable {
    private let directory: TemporaryDirectory
    private var socket: String { directory.file("tmux") }
    private var closed = false

    public static let tmuxPath = "/usr/bin/tmux"
    public static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: tmuxPath) }

    /// Starts `command` (program and arguments) at a 200-column terminal.
    public init(_ command: [String]) throws {
        directory = try TemporaryDirectory()
        let line = command.map(Self.shellQuoted).joined(separator: " ") + "; echo \"[exit $?]\"; exec sleep 3600"
        _ = try tmux(["new-session", "-d", "-s", "main", "-x", "200", "-y", "50", line])
    }

    deinit {
        close()
    }

    /// Types `text` and presses Enter (an empty `text`: Enter alone, taking the default).
    public func answer(_ text: String) throws {
        if !text.isEmpty { _ = try tmux(["send-keys", "-t", "main", "-l", text]) }
        _ = try tmux(["send-keys", "-t", "main", "Enter"])
    }

    /// Everything on the terminal since the start, wrapped lines joined.
    public func screen() throws -> String {
        try tmux(["capture-pane", "-p", "-J", "-t", "main", "-S", "-"])
    }

    /// Waits until `text` is on the screen `count` times; returns the screen.
    @discardableResult
    public func waitFor(_ text: String, count: Int = 1) async throws -> String {
        var last = ""
        do {
            try await waitUntil("\"\(text)\" on the terminal \(count) time(s)") {
                last = try screen()
                return last.components(separatedBy: text).count - 1 >= count
            }
        } catch {
            throw ConditionNeverMet(description: "\(error); the terminal shows:\n\(last)")
        }
        return last
    }

    /// The program's exit status, once it has exited.
    public func exitStatus() async throws -> Int32 {
        let screen = try await waitFor("[exit ")
        let tail = screen.components(separatedBy: "[exit ").last ?? ""
        guard let status = Int32(tail.prefix { $0.isNumber }) else {
            throw ConditionNeverMet(description: "no exit status on the terminal:\n\(screen)")
        }
        return status
    }

    /// Kills this session's tmux server (and with it the program, if it still runs).
    public func close() {
        guard !closed else { return }
        closed = true
        _ = try? tmux(["kill-server"])
    }

    private func tmux(_ arguments: [String]) throws -> String {
        let scratch = try TemporaryDirectory()
        let output = scratch.file("tmux.out")
        let pid = try spawnProgram(
            Self.tmuxPath,
            ["-S", socket] + arguments,
            standardOutput: output,
            standardError: output
        )
        let status = waitForExit(pid)
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw ConditionNeverMet(description: "tmux \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }

    private static func shellQuoted(_ word: String) -> String {
        "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
