import FoundationEssentials
import Glibc

/// A Unix datagram socket that sends each message to one address: a path, or with a leading `@` a name in
/// the abstract namespace. The descriptor is closed in `deinit`.
final class UnixDatagramSender: Sendable {
    private let descriptor: Int32
    private let address: [UInt8]

    /// Nil if `path` is neither absolute nor abstract, is too long for `sockaddr_un`, or no socket is left.
    init?(path: String) {
        guard path.hasPrefix("/") || path.hasPrefix("@"),
            path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        else { return nil }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        address = bytes
    }

    deinit {
        close(descriptor)
    }

    /// Sends `message` as one datagram (`sendto`); the errno if it was not sent.
    @discardableResult
    func send(_ message: [UInt8]) -> Int32? {
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { path in
            path.copyBytes(from: address)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let sent = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes {
                    sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent < 0 ? errno : nil
    }
}
