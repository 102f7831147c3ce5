import FenceCore
import Glibc
import Locking

/// Closes HTTP connections in stages, as RFC 9112 (section 9.6) asks of a server, where libmicrohttpd alone
/// would lose the end of what it sent.
///
/// libmicrohttpd 0.9.75 ends a connection by half-closing it (its answers, then a FIN) and closing the socket
/// at once. If the client's input is still unread then, or more arrives before the client has acknowledged
/// everything, the kernel resets the connection and drops whatever it had not yet delivered: a client that
/// pipelined requests behind one that ends the connection (a 505, a 431) loses the end of answers the
/// server had finished, and sees a reset instead. So a connection about to be closed with input unread or
/// output unacknowledged lingers: a duplicate of its socket stays open, its input is read and discarded,
/// and it is closed once the client has acknowledged everything or closed its own side.
///
/// Bounded, whoever the peer: at most `capacity` connections linger at once (beyond that, one is closed at
/// once as libmicrohttpd would), each for at most `maximumDuration` and `maximumDiscardedBytes` of input. One
/// thread serves them all, started when the first connection lingers, and sleeps while none does.
final class LingeringClose: Sendable {
    /// The process's one lingering close, shared by every `HTTPServer`.
    static let shared = LingeringClose()

    static let capacity = 64
    static let maximumDuration: Duration = .seconds(5)
    static let maximumDiscardedBytes = 1 << 20
    /// How often lingering connections are checked for the client's acknowledgement (the kernel tells
    /// of input, not of acknowledgements).
    static let checkIntervalMilliseconds: Int32 = 10

    private struct State {
        /// Sockets handed over and not yet taken by the thread.
        var adopted: [Int32] = []
        /// Sockets handed over and not closed yet.
        var open = 0
        /// The pipe that wakes the thread; nil until it is started.
        var wakeup: (read: Int32, write: Int32)?
    }

    private let state = Locked(State())

    private init() {}

    /// Sockets lingering now (handed over and not closed yet).
    var lingering: Int { state.withLock { $0.open } }

    /// Called as libmicrohttpd is about to close `socket`: keeps a duplicate of it open if closing now could
    /// lose what was sent, and there is room. Never blocks.
    func adopt(_ socket: Int32) {
        guard Self.queued(socket, UInt(FIONREAD)) > 0 || Self.queued(socket, UInt(TIOCOUTQ)) > 0 else { return }
        state.withLock { state in
            guard state.open < Self.capacity, let wakeup = startedWakeup(&state) else { return }
            let duplicate = fcntl(socket, F_DUPFD_CLOEXEC, 0)
            guard duplicate >= 0 else { return }
            state.adopted.append(duplicate)
            state.open += 1
            var byte: UInt8 = 1
            _ = write(wakeup.write, &byte, 1)  // a full pipe already wakes the thread
        }
    }

    /// The wake-up pipe, starting the thread first if it is not running; nil if either cannot be had (the
    /// connection is then closed as libmicrohttpd would).
    private func startedWakeup(_ state: inout State) -> (read: Int32, write: Int32)? {
        if let wakeup = state.wakeup { return wakeup }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return nil }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        let wakeup = (read: ends[0], write: ends[1])
        do {
            try DetachedThread.start(name: "fencegate.http-linger") { self.serve(wakeup: wakeup.read) }
        } catch {
            close(wakeup.read)
            close(wakeup.write)
            return nil
        }
        state.wakeup = wakeup
        return wakeup
    }

    /// The thread's loop: takes sockets handed over, discards their input, closes those that are done, and
    /// sleeps until input or a new socket arrives (or the next check while any lingers).
    private func serve(wakeup: Int32) {
        var sockets: [LingeringSocket] = []
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let adopted = state.withLock { state in
                defer { state.adopted = [] }
                return state.adopted
            }
            let now = ContinuousClock.now
            sockets += adopted.map { LingeringSocket(descriptor: $0, deadline: now + Self.maximumDuration) }
            let before = sockets.count
            sockets.removeAll { socket in
                guard socket.isDone(scratch: &scratch) else { return false }
                close(socket.descriptor)
                return true
            }
            if sockets.count < before { state.withLock { $0.open -= before - sockets.count } }

            var descriptors = [pollfd(fd: wakeup, events: Int16(POLLIN), revents: 0)]
            descriptors += sockets.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            _ = poll(&descriptors, nfds_t(descriptors.count), sockets.isEmpty ? -1 : Self.checkIntervalMilliseconds)
            var drained = [UInt8](repeating: 0, count: 64)
            while read(wakeup, &drained, drained.count) > 0 {}
        }
    }

    /// Bytes queued on a socket: `FIONREAD` received but not read, `TIOCOUTQ` sent but not acknowledged.
    fileprivate static func queued(_ socket: Int32, _ request: UInt) -> Int32 {
        var count: Int32 = 0
        return ioctl(socket, request, &count) == 0 ? count : 0
    }
}

/// One connection lingering: its socket (a duplicate of libmicrohttpd's), and how long and how much input
/// it may still take.
private final class LingeringSocket {
    let descriptor: Int32
    let deadline: ContinuousClock.Instant
    private var discarded = 0

    init(descriptor: Int32, deadline: ContinuousClock.Instant) {
        self.descriptor = descriptor
        self.deadline = deadline
        // The client learns that nothing more is coming even if libmicrohttpd did not say so (it ends a TLS
        // connection with TLS's own closure alone).
        shutdown(descriptor, Int32(SHUT_WR))
    }

    /// Reads and discards the input that has arrived; true once the socket can be closed without losing
    /// anything (the client closed its side, or acknowledged everything), or may no longer linger.
    func isDone(scratch: inout [UInt8]) -> Bool {
        while true {
            let count = scratch.withUnsafeMutableBytes {
                recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if count > 0 {
                discarded += count
                if discarded > LingeringClose.maximumDiscardedBytes { return true }
            } else if count == 0 {
                return true  // nothing more will arrive: closing now resets nothing
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                break
            } else if errno != EINTR {
                return true  // reset already, or failed: nothing left to save
            }
        }
        return LingeringClose.queued(descriptor, UInt(TIOCOUTQ)) == 0 || ContinuousClock.now >= deadline
    }
}
