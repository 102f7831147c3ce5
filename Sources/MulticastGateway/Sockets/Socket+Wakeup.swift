import FenceCore
import FoundationEssentials

extension Socket {
    /// Waits until the socket is readable (true) or `wakeup` is signalled (false), however long that takes.
    func waitReadable(orUntil wakeup: Wakeup) throws(SocketError) -> Bool {
        do {
            return try wakeup.waitReadable(descriptor)
        } catch {
            throw .errno("poll", error.code)
        }
    }

    /// The next datagram (see `receiveDatagram(capacity:timeout:)`), or nil once `wakeup` is signalled.
    func receiveDatagram(
        capacity: Int,
        orUntil wakeup: Wakeup
    ) throws(SocketError) -> (bytes: [UInt8], size: Int, from: SocketAddress?)? {
        guard try waitReadable(orUntil: wakeup) else { return nil }
        return try receiveDatagram(capacity: capacity, timeout: .zero)
    }

    /// The next connection (see `accept(timeout:)`; nil also when the peer gave up before it was accepted),
    /// or nil once `wakeup` is signalled.
    func accept(orUntil wakeup: Wakeup) throws(SocketError) -> (Socket, SocketAddress?)? {
        guard try waitReadable(orUntil: wakeup) else { return nil }
        return try accept(timeout: .zero)
    }
}
