import CMicroHTTPD
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
/// This relies on libmicrohttpd's order in `MHD_cleanup_connections` (0.9.75): the notification of the close,
/// then the socket's removal from its epoll set, then `close`; the duplicate thus never keeps the socket in
/// that set. It is used only with the version checked (`checkedLibraryVersion`). At shutdown libmicrohttpd
/// shuts both directions down first (`close_all_connections`), and such a connection reads as closed by the
/// client: it is closed at once.
///
/// Bounded, whoever the peer: at most `capacity` connections linger at once, `maximumPerAddress` of them from
/// one client address (beyond that, a connection is closed at once, as libmicrohttpd would), each for at most
/// `maximumDuration` from the hand-over and `maximumDiscardedBytes` of input. One thread serves them all, and
/// sleeps while none lingers.
final class LingeringClose: Sendable {
    /// The process's one lingering close, shared by every `HTTPServer`.
    static let shared = LingeringClose()

    static let capacity = 64
    static let maximumPerAddress = 8
    static let maximumDuration: Duration = .seconds(5)
    static let maximumDiscardedBytes = 1 << 20
    /// How often lingering connections are checked for the client's acknowledgement (the kernel tells
    /// of input, not of acknowledgements).
    static let checkIntervalMilliseconds: Int32 = 10

    /// Another libmicrohttpd than the one checked, or no thread or wake-up pipe: connections are then closed
    /// at once.
    struct StartFailure: Error, CustomStringConvertible {
        let description: String
    }

    private struct State {
        /// Sockets handed over and not yet taken by the thread.
        var adopted: [LingeringSocket] = []
        /// Sockets handed over and not closed yet, in all and by client address.
        var open = 0
        var openByAddress: [String: Int] = [:]
        /// The pipe that wakes the thread; nil until it is started.
        var wakeup: (read: Int32, write: Int32)?
    }

    private let state = Locked(State())

    private init() {}

    /// Sockets lingering now (handed over and not closed yet).
    var lingering: Int { state.withLock { $0.open } }

    /// The libmicrohttpd whose order of close, notification and epoll removal was checked (see above); with
    /// another, connections are closed at once.
    static let checkedLibraryVersion = "0.9.75"

    /// The version of the libmicrohttpd in use. Calls `MHD_get_version`.
    static var libraryVersion: String { MHD_get_version().map { String(cString: $0) } ?? "unknown" }

    /// Starts the thread, once per process; later calls return at once.
    /// - Throws: `StartFailure` if the libmicrohttpd in use is not the one checked, or the pipe or the
    ///   thread cannot be had.
    func start() throws(StartFailure) {
        guard Self.libraryVersion == Self.checkedLibraryVersion else {
            throw StartFailure(
                description: "libmicrohttpd \(Self.libraryVersion) in use, the lingering close is checked against "
                    + Self.checkedLibraryVersion
            )
        }
        try state.withLock { (state) throws(StartFailure) in
            guard state.wakeup == nil else { return }
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else {
                throw StartFailure(description: "pipe: \(String(cString: strerror(errno)))")
            }
            for end in ends {
                _ = fcntl(end, F_SETFD, FD_CLOEXEC)
                _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            }
            do {
                try DetachedThread.start(name: "fencegate.http-linger") { [ends] in self.serve(wakeup: ends[0]) }
            } catch {
                close(ends[0])
                close(ends[1])
                throw StartFailure(description: "\(error)")
            }
            state.wakeup = (ends[0], ends[1])
        }
    }

    /// Called as libmicrohttpd is about to close `socket`: keeps a duplicate of it open if closing now could
    /// lose what was sent, and there is room for `clientAddress` (asked only then). Does nothing before
    /// `start()`. Never blocks.
    func adopt(_ socket: Int32, clientAddress: () -> String?) {
        guard Self.closingWouldLoseData(socket), let address = clientAddress() else { return }
        let deadline = ContinuousClock.now + Self.maximumDuration
        state.withLock { state in
            guard let wakeup = state.wakeup, state.open < Self.capacity,
                state.openByAddress[address, default: 0] < Self.maximumPerAddress
            else { return }
            let duplicate = fcntl(socket, F_DUPFD_CLOEXEC, 0)
            guard duplicate >= 0 else { return }
            state.adopted.append(LingeringSocket(descriptor: duplicate, address: address, deadline: deadline))
            state.open += 1
            state.openByAddress[address, default: 0] += 1
            var byte: UInt8 = 1
            _ = write(wakeup.write, &byte, 1)  // a full pipe already wakes the thread
        }
    }

    /// Whether input is unread, or output other than the FIN unacknowledged (the FIN alone: the client has
    /// every byte, and a reset can no longer take any).
    private static func closingWouldLoseData(_ socket: Int32) -> Bool {
        if queued(socket, UInt(FIONREAD)) > 0 { return true }
        let unacknowledged = queued(socket, UInt(TIOCOUTQ))
        guard unacknowledged == 1 else { return unacknowledged > 1 }
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(socket, Int32(IPPROTO_TCP), Int32(TCP_INFO), &info, &length) == 0 else { return true }
        let finSent: Set<Int> = [TCP_FIN_WAIT1, TCP_CLOSING, TCP_LAST_ACK]
        return !finSent.contains(Int(info.tcpi_state))
    }

    /// The thread's loop: takes sockets handed over, discards their input, closes those that are done, and
    /// sleeps until input or a new socket arrives (or the next check while any lingers).
    private func serve(wakeup: Int32) {
        var sockets: [LingeringSocket] = []
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            sockets += state.withLock { state in
                defer { state.adopted = [] }
                return state.adopted
            }
            var closed: [LingeringSocket] = []
            sockets.removeAll { socket in
                guard socket.isDone(scratch: &scratch) else { return false }
                close(socket.descriptor)
                closed.append(socket)
                return true
            }
            if !closed.isEmpty {
                state.withLock { state in
                    state.open -= closed.count
                    for socket in closed {
                        state.openByAddress[socket.address, default: 1] -= 1
                        if state.openByAddress[socket.address] == 0 { state.openByAddress[socket.address] = nil }
                    }
                }
            }

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

/// One connection lingering: its socket (a duplicate of libmicrohttpd's), its client's address, and how long
/// and how much input it may still take. @unchecked: made by `adopt` and handed over under the lock; only the
/// lingering thread touches it afterwards.
private final class LingeringSocket: @unchecked Sendable {
    let descriptor: Int32
    let address: String
    let deadline: ContinuousClock.Instant
    /// Whether the write side was shut down (by the thread, when it takes the socket).
    private var shutDown = false
    private var discarded = 0

    init(descriptor: Int32, address: String, deadline: ContinuousClock.Instant) {
        self.descriptor = descriptor
        self.address = address
        self.deadline = deadline
    }

    /// Reads and discards the input that has arrived; true once the socket can be closed without losing
    /// anything (the client closed its side, or acknowledged everything), or may no longer linger.
    func isDone(scratch: inout [UInt8]) -> Bool {
        if !shutDown {
            // The client learns that nothing more is coming even if libmicrohttpd did not say so (it ends a
            // TLS connection with TLS's own closure alone).
            shutdown(descriptor, Int32(SHUT_WR))
            shutDown = true
        }
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
