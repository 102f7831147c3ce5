import FoundationEssentials

/// A process as the kernel knows it: its PID and its start time in clock ticks since boot.
///
/// The pair stays unique across PID reuse, so recovery can tell "the process that wrote this row is
/// still running" from "that PID now belongs to someone else".
package struct ProcessIdentity: Sendable, Equatable {
    package let pid: Int32
    package let startTicks: Int64

    package init(pid: Int32, startTicks: Int64) {
        self.pid = pid
        self.startTicks = startTicks
    }

    /// This process.
    package static let current: ProcessIdentity = {
        let pid = ProcessInfo.processInfo.processIdentifier
        return ProcessIdentity(pid: pid, startTicks: startTicks(of: pid) ?? 0)
    }()

    /// True if a process with this PID and start time exists now.
    package var isAlive: Bool {
        guard let ticks = Self.startTicks(of: pid) else { return false }
        return ticks == startTicks
    }

    /// Field 22 (`starttime`) of `/proc/PID/stat`, or nil if there is no such process.
    package static func startTicks(of pid: Int32) -> Int64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let commandEnd = stat.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm)" come fields 3…; starttime is field 22, i.e. the 20th after the parenthesis.
        let fields = stat[stat.index(after: commandEnd)...].split(separator: " ")
        guard fields.count > 19 else { return nil }
        return Int64(fields[19])
    }
}
