import CTestSupport
import Foundation

/// A Unix datagram socket standing where systemd's notification socket would be (`$NOTIFY_SOCKET`):
/// it collects what a service tells systemd.
public final class NotifySocket: @unchecked Sendable {
    public let path: String
    private let descriptor: Int32

    public init(path: String) throws {
        self.path = path
        descriptor = fg_bind_unix_datagram(path)
        guard descriptor >= 0 else { throw ConditionNeverMet(description: "cannot bind \(path): errno \(errno)") }
    }

    deinit {
        close(descriptor)
        unlink(path)
    }

    /// The next message, or nil if none came within `timeout`.
    public func receive(timeout: Duration = .seconds(10)) async throws -> String? {
        let descriptor = self.descriptor
        let milliseconds = Int32(
            timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        )
        return try await onOwnThread {
            var buffer = [CChar](repeating: 0, count: 4096)
            let length = fg_receive_datagram(descriptor, &buffer, Int32(buffer.count), milliseconds)
            guard length > 0 else { return nil }
            return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// Messages until one contains `field` (returned last), failing after `timeout`.
    public func messages(until field: String, timeout: Duration = .seconds(20)) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        var messages: [String] = []
        while ContinuousClock.now < deadline {
            guard let message = try await receive(timeout: deadline - ContinuousClock.now) else { break }
            messages.append(message)
            if message.split(separator: "\n").contains(Substring(field)) { return messages }
        }
        throw ConditionNeverMet(description: "no \(field) among \(messages)")
    }
}
