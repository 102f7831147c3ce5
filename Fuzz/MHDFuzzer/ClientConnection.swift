import Foundation

/// A client's TCP connection to the server on 127.0.0.1, closed when dropped.
///
/// The server runs in this process, so the connection also finds the server's end of it, to wait until
/// the server has read what was sent before sending more or shutting down. libmicrohttpd 0.9.75 takes a
/// short read as "nothing more to read" (edge-triggered epoll): when the last bytes and the client's FIN
/// arrive together, it reads the bytes and never sees the FIN, so a connection waiting for the rest of a
/// request stays open until its timeout. Shutting down only once the bytes are read gives the FIN its own
/// event, and lets each part of an input reach the server on its own.
///
/// While it waits, the client also reads what the server has sent, as a client that pipelines would: a
/// server writing a long answer then never blocks on a full receive window, and what it sent is in hand
/// before it closes.
struct ClientConnection: ~Copyable {
    private let descriptor: Int32
    private let serverPort: UInt16
    private let localPort: UInt16
    /// The server's descriptor for this connection; nil if not looked for, or not found (the server closed
    /// it first).
    private let serverSide: Int32?
    /// What the server has sent so far, and whether the connection has ended.
    private var received = ReceivedStream()
    private var ended = false

    /// Connects; with `waitingForReads`, finds the server's end of the connection, so that `send` waits
    /// until the server has read. A server that does not accept is a failed precondition. When every local
    /// port is taken by a connection in TIME_WAIT (a connection the client shuts down first ends in it on the
    /// client's side), waits for one to be freed: Linux reuses them on loopback after a second
    /// (`net.ipv4.tcp_tw_reuse`, 2 by default).
    init(port: UInt16, waitingForReads: Bool) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var attempts = 0
        while true {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            precondition(descriptor >= 0, "socket: \(String(cString: strerror(errno)))")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if connected == 0 {
                var on: Int32 = 1
                setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                var sendTimeout = timeval(tv_sec: 1, tv_usec: 0)
                setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
                self.descriptor = descriptor
                break
            }
            let error = errno
            close(descriptor)
            attempts += 1
            precondition(
                error == EADDRNOTAVAIL && attempts < 200,
                "cannot connect to the server on 127.0.0.1:\(port): \(String(cString: strerror(error)))"
            )
            usleep(10_000)
        }
        serverPort = port
        localPort = Self.port(of: descriptor, peer: false) ?? 0
        let deadline = ContinuousClock.now + .seconds(1)
        serverSide =
            waitingForReads
            ? Self.findServerSide(client: descriptor, localPort: localPort, serverPort: port, by: deadline) : nil
    }

    deinit { close(descriptor) }

    /// Sends all of `bytes`, then, if the connection waits for reads, waits (at most a second) until the
    /// server has read them, reading what it sends meanwhile. False if the server closed the connection
    /// first (it may answer and close before reading everything, e.g. after a 431; a reset is noted in the
    /// stream) or took nothing for a second (the send timeout).
    mutating func send(_ bytes: ArraySlice<UInt8>) -> Bool {
        var rest = bytes
        while !rest.isEmpty {
            let sent = rest.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                // A reset before the server's FIN (after it, a send fails with EPIPE): the socket's error is
                // taken here, and a later read would see an end of stream instead.
                if errno == ECONNRESET {
                    ended = true
                    received.endedInReset = true
                }
                return false
            }
            rest = rest.dropFirst(sent)
        }
        waitUntilServerHasRead(by: .now + .seconds(1))
        return true
    }

    /// Tells the server that the client has nothing more to send.
    func finishSending() {
        shutdown(descriptor, Int32(SHUT_WR))
    }

    /// Everything the server sent until it closed the connection or reset it; nil if it has done neither by
    /// `deadline`.
    mutating func receiveUntilClosed(by deadline: ContinuousClock.Instant) -> ReceivedStream? {
        while !ended {
            let remaining = deadline - .now
            guard remaining > .zero else { return nil }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds =
                remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000
            if poll(&poller, 1, Int32(clamping: milliseconds + 1)) > 0 { receiveAvailable() }
        }
        return received
    }

    /// Reads what has arrived, without waiting; notes the end of the connection.
    private mutating func receiveAvailable() {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16 * 1024) { buffer in
            while !ended {
                let count = recv(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                if count > 0 {
                    received.bytes += buffer[..<count]
                } else if count == 0 {
                    ended = true
                } else if errno == ECONNRESET {
                    ended = true
                    received.endedInReset = true
                } else if errno == EAGAIN || errno == EWOULDBLOCK {
                    return
                } else if errno != EINTR {
                    preconditionFailure("recv: \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    /// Waits until the server's end has taken in everything sent (nothing left unacknowledged on ours) and
    /// read it all, until it closes, or until `deadline` (a server busy answering a request reads the
    /// next one only afterwards), reading what the server sends meanwhile. Yields at first, then sleeps
    /// longer and longer, so as not to take the processor from the server.
    private mutating func waitUntilServerHasRead(by deadline: ContinuousClock.Instant) {
        guard let serverSide else { return }
        var rounds = 0
        while Self.queued(descriptor, UInt(TIOCOUTQ)) > 0 || Self.queued(serverSide, UInt(FIONREAD)) > 0 {
            receiveAvailable()
            rounds += 1
            // The server may have closed, and the descriptor been reused: check now and then.
            guard !ended, ContinuousClock.now < deadline,
                rounds % 8 != 0 || Self.isServerSide(serverSide, localPort: localPort, serverPort: serverPort)
            else { return }
            if rounds < 16 { sched_yield() } else { usleep(UInt32(min(20 * (rounds - 15), 1000))) }
        }
    }

    /// The server accepts in its own thread, into the lowest free descriptor: most often the one after the
    /// client's, so that one is tried first while the server has not accepted yet, and all every so often.
    private static func findServerSide(
        client: Int32,
        localPort: UInt16,
        serverPort: UInt16,
        by deadline: ContinuousClock.Instant
    ) -> Int32? {
        let likely = (client + 1)..<(client + 4)
        let all = Array(0..<client) + Array(likely.upperBound..<(client + 64))
        let matches = { (candidate: Int32) in isServerSide(candidate, localPort: localPort, serverPort: serverPort) }
        var attempts = 0
        repeat {
            if let found = likely.first(where: matches) { return found }
            attempts += 1
            if attempts % 16 == 0, let found = all.first(where: matches) { return found }
            sched_yield()
        } while ContinuousClock.now < deadline
        return nil
    }

    /// Whether `candidate` is a TCP socket from the server's port to the client's local port.
    private static func isServerSide(_ candidate: Int32, localPort: UInt16, serverPort: UInt16) -> Bool {
        port(of: candidate, peer: true) == localPort && port(of: candidate, peer: false) == serverPort
    }

    /// Bytes queued on a socket: `TIOCOUTQ` sent but not acknowledged, `FIONREAD` received but not read.
    private static func queued(_ socket: Int32, _ request: UInt) -> Int32 {
        var count: Int32 = 0
        return ioctl(socket, request, &count) == 0 ? count : 0
    }

    /// The port of a socket's IPv4 address (its own or its peer's); nil if it is not a connected IPv4 socket.
    private static func port(of socket: Int32, peer: Bool) -> UInt16? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(socket, $0, &length) : getsockname(socket, $0, &length)
            }
        }
        guard result == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
        return UInt16(bigEndian: address.sin_port)
    }
}

/// What the server sent on one connection, and how the connection ended.
struct ReceivedStream {
    var bytes: [UInt8] = []
    /// Whether the connection ended in a reset before the server's FIN arrived (recv's ECONNRESET; a reset
    /// after the FIN ends the stream as the FIN does). Such a reset drops whatever the server's kernel had
    /// not yet delivered. The server closes in stages (`LingeringClose` in FenceAPI): it sends its FIN
    /// before it closes, and resets only a client that sends after that, or beyond the limits of its
    /// lingering, which one connection at a time with inputs of a few KiB does not reach here.
    var endedInReset = false
}
