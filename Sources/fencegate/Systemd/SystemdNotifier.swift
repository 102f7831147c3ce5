import FoundationEssentials
import Glibc

/// systemd's notification protocol (sd_notify(3)), spoken directly: one datagram per message to the Unix
/// socket named by `$NOTIFY_SOCKET` (a leading `@` is the abstract namespace). Without that variable, as
/// when not started by systemd, every call does nothing.
final class SystemdNotifier: Sendable {
    private let socket: UnixDatagramSender
    /// The watchdog interval systemd expects pings within (`$WATCHDOG_USEC`, if meant for this process).
    let watchdogInterval: Duration?

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`; nil if there is no socket to notify.
    init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], let socket = UnixDatagramSender(path: path) else { return nil }
        self.socket = socket
        let pidMatches = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        if pidMatches, let microseconds = environment["WATCHDOG_USEC"].flatMap(Int64.init), microseconds > 0 {
            watchdogInterval = .microseconds(microseconds)
        } else {
            watchdogInterval = nil
        }
    }

    /// Sends `fields` (e.g. `["READY=1", "STATUS=serving"]`) as one message. Failures are ignored: the
    /// service must run the same whether or not systemd listens.
    func notify(_ fields: [String]) {
        socket.send(Array(fields.joined(separator: "\n").utf8))
    }
}
