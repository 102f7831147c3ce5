import FoundationEssentials
import Glibc

/// A socket call that failed: the errno and the call's name, or a timeout.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    /// The errno, or nil for a timeout / closed peer.
    public let code: Int32?
    let detail: String?

    static func errno(_ operation: String, _ code: Int32 = Glibc.errno) -> SocketError {
        SocketError(operation: operation, code: code, detail: nil)
    }

    static func timedOut(_ operation: String) -> SocketError {
        SocketError(operation: operation, code: nil, detail: "timed out")
    }

    static func closed(_ operation: String) -> SocketError {
        SocketError(operation: operation, code: nil, detail: "connection closed by peer")
    }

    public var description: String {
        if let code { return "\(operation): \(String(cString: strerror(code)))" }
        return "\(operation): \(detail ?? "failed")"
    }
}

/// One socket; owns its descriptor and closes it in `deinit`.
///
/// `@unchecked Sendable`: a socket is used by one request at a time, handed from step to step; the
/// descriptor itself is immutable. Blocking calls here must run off Swift's cooperative pool.
/// Package-visible for the challenge-response fuzz target, which drives the real reader over a socket pair.
package final class Socket: @unchecked Sendable {
    let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    /// Calls `socket(2)` with close-on-exec.
    convenience init(family: SocketAddress.Family, stream: Bool) throws(SocketError) {
        let domain = family == .ipv4 ? AF_INET : AF_INET6
        let type = (stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)) | Int32(SOCK_CLOEXEC.rawValue)
        let descriptor = socket(domain, type, 0)
        guard descriptor >= 0 else { throw .errno("socket") }
        self.init(descriptor: descriptor)
    }

    /// Two connected Unix stream sockets (`socketpair(2)`), close-on-exec.
    package static func connectedPair() throws(SocketError) -> (Socket, Socket) {
        var descriptors: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &descriptors) == 0 else { throw .errno("socketpair") }
        return (Socket(descriptor: descriptors[0]), Socket(descriptor: descriptors[1]))
    }

    /// Stops a listening socket from taking connections (`shutdown(SHUT_RDWR)`): the kernel refuses new
    /// ones and resets those not yet accepted. The descriptor stays open until `deinit`.
    func stopListening() {
        _ = shutdown(descriptor, Int32(SHUT_RDWR))
    }

    /// Ends this side's writing (`shutdown(SHUT_WR)`): the peer reads end of file after what was sent.
    package func shutdownWriting() throws(SocketError) {
        try call("shutdown") { Int(shutdown(descriptor, Int32(SHUT_WR))) }
    }

    deinit {
        close(descriptor)
    }

    /// Runs a call that returns -1 and sets errno on failure, retrying EINTR; traps on EBADF/EFAULT (a bug).
    @discardableResult
    private func call(_ operation: String, _ body: () -> Int) throws(SocketError) -> Int {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            precondition(code != EBADF && code != EFAULT, "\(operation): \(String(cString: strerror(code))) (a bug)")
            throw .errno(operation, code)
        }
    }

    func setOption<T>(_ level: Int32, _ name: Int32, _ value: T, _ operation: String) throws(SocketError) {
        try call(operation) {
            withUnsafeBytes(of: value) { Int(setsockopt(descriptor, level, name, $0.baseAddress, socklen_t($0.count))) }
        }
    }

    func bind(_ address: SocketAddress) throws(SocketError) {
        try call("bind(\(address))") { address.withSocketAddress { Int(Glibc.bind(descriptor, $0, $1)) } }
    }

    func listen(backlog: Int32 = 64) throws(SocketError) {
        try call("listen") { Int(Glibc.listen(descriptor, backlog)) }
    }

    /// The local address (useful after binding port 0).
    func localAddress() throws(SocketError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try call("getsockname") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Int(getsockname(descriptor, $0, &length)) }
            }
        }
        guard let address = SocketAddress(storage: storage) else { throw .errno("getsockname", EAFNOSUPPORT) }
        return address
    }

    /// Waits until readable (or writable), at most `timeout`. Returns false on timeout.
    func wait(forWriting: Bool = false, timeout: Duration) throws(SocketError) -> Bool {
        var descriptorSet = pollfd(fd: descriptor, events: Int16(forWriting ? POLLOUT : POLLIN), revents: 0)
        let milliseconds = Int32(
            clamping: max(
                0,
                timeout.components.seconds * 1000 + (timeout.components.attoseconds + 999_999_999_999_999)
                    / 1_000_000_000_000_000
            )
        )
        let ready = try call("poll") { Int(poll(&descriptorSet, 1, milliseconds)) }
        return ready > 0
    }

    /// Waits until readable (or writable), at most until `deadline`. Returns false once it has passed.
    func wait(forWriting: Bool = false, until deadline: ContinuousClock.Instant) throws(SocketError) -> Bool {
        let remaining = ContinuousClock.now.duration(to: deadline)
        guard remaining > .zero else { return false }
        return try wait(forWriting: forWriting, timeout: remaining)
    }

    /// Receives one datagram of at most `capacity` bytes, waiting at most `timeout`; nil on timeout.
    /// The returned byte count is the datagram's real size, so an oversized datagram is detected.
    func receiveDatagram(
        capacity: Int,
        timeout: Duration
    ) throws(SocketError) -> (bytes: [UInt8], size: Int, from: SocketAddress?)? {
        guard try wait(timeout: timeout) else { return nil }
        var buffer = [UInt8](repeating: 0, count: capacity)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let size = try call("recvfrom") {
            buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(descriptor, raw.baseAddress, raw.count, Int32(MSG_TRUNC), $0, &length)
                    }
                }
            }
        }
        return (Array(buffer.prefix(min(size, capacity))), size, SocketAddress(storage: storage))
    }

    /// Sends one datagram.
    func send(_ bytes: [UInt8], to address: SocketAddress) throws(SocketError) {
        try call("sendto(\(address))") {
            bytes.withUnsafeBytes { raw in
                address.withSocketAddress {
                    sendto(descriptor, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL), $0, $1)
                }
            }
        }
    }

    /// Connects within `timeout` (non-blocking connect, then poll), then returns to blocking mode.
    func connect(to address: SocketAddress, timeout: Duration) throws(SocketError) {
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(descriptor, F_SETFL, flags) }
        let started = address.withSocketAddress { Glibc.connect(descriptor, $0, $1) }
        if started != 0 {
            guard errno == EINPROGRESS || errno == EINTR else { throw .errno("connect(\(address))") }
            guard try wait(forWriting: true, timeout: timeout) else { throw .timedOut("connect(\(address))") }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            try call("getsockopt(SO_ERROR)") { Int(getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length)) }
            guard error == 0 else { throw .errno("connect(\(address))", error) }
        }
    }

    /// Accepts one connection if one arrives within `timeout`; nil otherwise.
    func accept(timeout: Duration) throws(SocketError) -> (Socket, SocketAddress?)? {
        guard try wait(timeout: timeout) else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let accepted: Int
        do throws(SocketError) {
            accepted = try call("accept") {
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Int(Glibc.accept(descriptor, $0, &length))
                    }
                }
            }
        } catch {
            if error.code == EAGAIN || error.code == ECONNABORTED { return nil }
            throw error
        }
        _ = fcntl(Int32(accepted), F_SETFD, FD_CLOEXEC)
        return (Socket(descriptor: Int32(accepted)), SocketAddress(storage: storage))
    }

    /// Reads exactly `count` bytes, all of them by `deadline`: a peer that sends a byte now and then cannot
    /// stretch the read.
    package func read(exactly count: Int, deadline: ContinuousClock.Instant) throws(SocketError) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        var buffer = [UInt8](repeating: 0, count: count)
        while result.count < count {
            guard try wait(until: deadline) else { throw .timedOut("read") }
            let wanted = count - result.count
            let received = try call("read") {
                buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, wanted, 0) }
            }
            guard received > 0 else { throw .closed("read") }
            result += buffer.prefix(received)
        }
        return result
    }

    /// Waits, at most until `deadline`, for the peer to close its side (end of file); true if it closed. A
    /// peer that sends anything instead ends the wait at once (false): closing then resets the connection,
    /// which leaves no TIME_WAIT state either. Closing after the peer leaves its side holding the
    /// TIME_WAIT state: fence_xvm listens on one port (1229), so every call back to a guest goes to the same
    /// address and port, and a side that closes first keeps one such state per call back for a minute, which
    /// the kernel then searches through for each new connection's local port.
    func awaitPeerClose(deadline: ContinuousClock.Instant) -> Bool {
        var scratch = [UInt8](repeating: 0, count: 64)
        while (try? wait(until: deadline)) == true {
            let received = scratch.withUnsafeMutableBytes {
                recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if received == 0 { return true }
            if received > 0 || (errno != EINTR && errno != EAGAIN) { return false }
        }
        return false
    }

    /// Reads exactly `count` bytes within `timeout` from now.
    package func read(exactly count: Int, timeout: Duration) throws(SocketError) -> [UInt8] {
        try read(exactly: count, deadline: .now + timeout)
    }

    /// Writes all of `bytes` by `deadline`.
    package func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws(SocketError) {
        var sent = 0
        while sent < bytes.count {
            guard try wait(forWriting: true, until: deadline) else { throw .timedOut("write") }
            let written = try call("write") {
                bytes.withUnsafeBytes {
                    Glibc.send(descriptor, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
                }
            }
            sent += written
        }
    }

    /// Writes what the socket takes of `bytes` now, without waiting (safe on any thread); returns how many
    /// bytes it took, 0 if its buffer is full.
    package func writeWithoutWaiting(_ bytes: [UInt8]) throws(SocketError) -> Int {
        do {
            return try call("write") {
                bytes.withUnsafeBytes {
                    Glibc.send(descriptor, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
            }
        } catch let error where error.code == EAGAIN || error.code == EWOULDBLOCK {
            return 0
        }
    }

    /// Writes all of `bytes` within `timeout` from now.
    package func write(_ bytes: [UInt8], timeout: Duration) throws(SocketError) {
        try write(bytes, deadline: .now + timeout)
    }
}
