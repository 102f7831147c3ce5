import FoundationEssentials
import Glibc

/// A one-way signal for threads blocked on sockets: once `signal()` is called, every wait given this
/// wake-up returns at once, now and later (a pipe whose read end stays readable). Stopping a listener this
/// way needs no timeouts: its thread sleeps in `poll` until a request or the signal arrives.
public final class Wakeup: Sendable {
    /// The descriptor to poll for reading: readable once signalled.
    public let readEnd: Int32
    private let writeEnd: Int32

    /// - Throws: the errno of `pipe(2)`.
    public init() throws(WakeupError) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw WakeupError(code: errno) }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        readEnd = ends[0]
        writeEnd = ends[1]
    }

    /// Wakes every waiter, now and from now on. Safe to call more than once.
    public func signal() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)  // a full pipe is already readable: nothing is lost
    }

    /// Waits until `descriptor` is readable (true) or this wake-up is signalled (false), however long that
    /// takes; EINTR is retried.
    /// - Throws: the errno of `poll(2)`.
    public func waitReadable(_ descriptor: Int32) throws(WakeupError) -> Bool {
        var descriptors = [
            pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            if poll(&descriptors, 2, -1) < 0 {
                if errno == EINTR { continue }
                throw WakeupError(code: errno)
            }
            if descriptors[1].revents != 0 { return false }
            if descriptors[0].revents != 0 { return true }
        }
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }
}

/// `pipe(2)` or `poll(2)` failed.
public struct WakeupError: Error, CustomStringConvertible {
    public let code: Int32
    public var description: String { "wake-up pipe: \(String(cString: strerror(code)))" }
}
