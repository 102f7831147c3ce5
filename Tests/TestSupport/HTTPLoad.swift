import Foundation

/// A small HTTP/1.1 load generator for tests: keep-alive connections to 127.0.0.1, each on its own thread,
/// sending one request after another and reading each answer (status line, headers, `Content-Length`
/// body). For tests that need many thousands of requests, where a curl per request would take minutes.
public enum HTTPLoad {
    /// Sends `requests` requests in all over `connections` connections and returns how many got each status
    /// (0: the connection failed, or with `answerTimeout`, no answer came in that time).
    public static func run(
        port: UInt16,
        method: String = "GET",
        path: String,
        headers: [String: String] = [:],
        connections: Int,
        requests: Int,
        answerTimeout: Duration? = nil
    ) async throws -> [Int: Int] {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "Content-Length: 0\r\n\r\n"
        let bytes = Array(request.utf8)
        let perConnection = (requests + connections - 1) / connections
        return try await withThrowingTaskGroup(of: [Int: Int].self) { group in
            for index in 0..<connections {
                let count = min(perConnection, requests - index * perConnection)
                guard count > 0 else { continue }
                group.addTask {
                    try await onOwnThread {
                        loop(port: port, request: bytes, count: count, answerTimeout: answerTimeout)
                    }
                }
            }
            var total: [Int: Int] = [:]
            for try await part in group { total.merge(part, uniquingKeysWith: +) }
            return total
        }
    }

    private static func loop(port: UInt16, request: [UInt8], count: Int, answerTimeout: Duration?) -> [Int: Int] {
        var statuses: [Int: Int] = [:]
        var descriptor: Int32 = -1
        var buffer: [UInt8] = []
        defer { if descriptor >= 0 { close(descriptor) } }
        for _ in 0..<count {
            if descriptor < 0 {
                descriptor = connect(port: port)
                buffer = []
                if descriptor >= 0, let answerTimeout {
                    var limit = timeval(tv_sec: Int(answerTimeout.components.seconds), tv_usec: 0)
                    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                }
            }
            guard descriptor >= 0, send(descriptor, request),
                let (status, keepAlive) = readResponse(descriptor, &buffer)
            else {
                statuses[0, default: 0] += 1
                if descriptor >= 0 { close(descriptor) }
                descriptor = -1
                continue
            }
            statuses[status, default: 0] += 1
            if !keepAlive {
                close(descriptor)
                descriptor = -1
            }
        }
        return statuses
    }

    /// A TCP connection to 127.0.0.1:`port`, from 127.0.0.`source` if given (any address of 127/8 is
    /// loopback); -1 if it cannot be made.
    public static func connect(port: UInt16, source: UInt8? = nil) -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return -1 }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = (UInt32(0x7F00_0000) | UInt32(source)).bigEndian
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else {
                close(descriptor)
                return -1
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(descriptor)
            return -1
        }
        return descriptor
    }

    /// Sends all of `bytes` on `descriptor`; false if the connection failed first.
    public static func send(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let written = bytes.withUnsafeBytes {
                Foundation.send(descriptor, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return false }
            sent += written
        }
        return true
    }

    /// Reads one response from `buffer` plus what arrives; leaves any bytes after it in `buffer`.
    private static func readResponse(_ descriptor: Int32, _ buffer: inout [UInt8]) -> (status: Int, keepAlive: Bool)? {
        let separator: [UInt8] = [13, 10, 13, 10]
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        func fill() -> Bool {
            let received = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if received < 0, errno == EINTR { return true }
            guard received > 0 else { return false }
            buffer += chunk.prefix(received)
            return true
        }
        var headerEnd: Int?
        while headerEnd == nil {
            if buffer.count >= 4 {
                headerEnd = (0...(buffer.count - 4)).first { Array(buffer[$0..<$0 + 4]) == separator }
            }
            if headerEnd == nil, !fill() { return nil }
        }
        let head = String(decoding: buffer[..<headerEnd!], as: UTF8.self).lowercased()
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.count >= 12, let status = Int(statusLine.dropFirst(9).prefix(3))
        else {
            return nil
        }
        let length =
            lines.compactMap { line -> Int? in
                guard line.hasPrefix("content-length:") else { return nil }
                return Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces))
            }.first ?? 0
        let total = headerEnd! + 4 + length
        while buffer.count < total {
            guard fill() else { return nil }
        }
        buffer.removeFirst(total)
        return (status, !lines.contains { $0.hasPrefix("connection:") && $0.contains("close") })
    }
}

/// A Unix stream socket that accepts connections and never answers: a libvirtd that hangs (the libvirt
/// client's remote driver connects, sends its first call and waits forever). For tests of what a hung
/// hypervisor can make the service spend; named as the fault it stands for.
public final class HungLibvirtdSocket: @unchecked Sendable {
    public let path: String
    private let descriptor: Int32
    private let lock = NSLock()
    private var held: [Int32] = []
    private var stopped = false

    /// Listens at `path` (which must not exist).
    public init(path: String) throws {
        self.path = path
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard descriptor >= 0, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ConditionNeverMet(description: "cannot make a Unix socket at \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(descriptor, 1024) == 0 else {
            close(descriptor)
            throw ConditionNeverMet(description: "cannot listen at \(path): \(String(cString: strerror(errno)))")
        }
        let thread = Thread { [self] in acceptForever() }
        thread.start()
    }

    /// The libvirt URI of the test driver behind this socket.
    public var uri: String { "test+unix:///default?socket=\(path)" }

    /// Connections accepted so far (each one held open, unanswered).
    public var accepted: Int { lock.withLock { held.count } }

    private func acceptForever() {
        while true {
            let connection = accept(descriptor, nil, nil)
            guard connection >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let keep = lock.withLock { () -> Bool in
                guard !stopped else { return false }
                held.append(connection)
                return true
            }
            if !keep { close(connection) }
        }
    }

    /// Closes every connection (the service sees the hypervisor go away) and stops listening.
    public func stop() {
        let connections = lock.withLock { () -> [Int32]? in
            guard !stopped else { return nil }
            stopped = true
            defer { held = [] }
            return held
        }
        guard let connections else { return }
        for connection in connections { close(connection) }
        shutdown(descriptor, Int32(SHUT_RDWR))
        close(descriptor)
        unlink(path)
    }

    deinit {
        stop()
    }
}
