import Foundation

/// A one-way signal for threads blocked on sockets: once `signal()` is called, every wait given this
/// wake-up returns at once, now and later (a pipe whose read end stays readable). Stopping a listener this
/// way needs no timeouts: its thread sleeps in `poll` until a request or the signal arrives.
final class Wakeup: Sendable {
    let readEnd: Int32
    private let writeEnd: Int32

    init() throws(SocketError) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw .errno("pipe") }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        readEnd = ends[0]
        writeEnd = ends[1]
    }

    /// Wakes every waiter, now and from now on. Safe to call more than once.
    func signal() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)  // a full pipe is already readable: nothing is lost
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }
}

extension Socket {
    /// Waits until the socket is readable (true) or `wakeup` is signalled (false), however long that takes.
    func waitReadable(orUntil wakeup: Wakeup) throws(SocketError) -> Bool {
        var descriptors = [
            pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeup.readEnd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            if poll(&descriptors, 2, -1) < 0 {
                if errno == EINTR { continue }
                throw .errno("poll")
            }
            if descriptors[1].revents != 0 { return false }
            if descriptors[0].revents != 0 { return true }
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
