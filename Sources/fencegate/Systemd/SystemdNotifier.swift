import Foundation

/// systemd's notification protocol (sd_notify(3)), spoken directly: one datagram per message to the Unix
/// socket named by `$NOTIFY_SOCKET` (a leading `@` is the abstract namespace). Without that variable, as
/// when not started by systemd, every call does nothing.
final class SystemdNotifier: Sendable {
    private let descriptor: Int32
    private let address: [UInt8]
    /// The watchdog interval systemd expects pings within (`$WATCHDOG_USEC`, if meant for this process).
    let watchdogInterval: Duration?

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`; nil if there is no socket to notify.
    init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], path.hasPrefix("/") || path.hasPrefix("@"),
            path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        else { return nil }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        address = bytes
        let pidMatches = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        if pidMatches, let microseconds = environment["WATCHDOG_USEC"].flatMap(Int64.init), microseconds > 0 {
            watchdogInterval = .microseconds(microseconds)
        } else {
            watchdogInterval = nil
        }
    }

    deinit {
        close(descriptor)
    }

    /// Sends `fields` (e.g. `["READY=1", "STATUS=serving"]`) as one message. Failures are ignored: the
    /// service must run the same whether or not systemd listens.
    func notify(_ fields: [String]) {
        let message = Array(fields.joined(separator: "\n").utf8)
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { path in
            path.copyBytes(from: address)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        _ = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes {
                    sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
    }
}
