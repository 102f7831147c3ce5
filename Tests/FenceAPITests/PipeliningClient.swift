import Foundation
import TestSupport

/// A client on 127.0.0.1 that writes raw bytes and reads only when told, telling the server's FIN from a
/// reset.
final class PipeliningClient: @unchecked Sendable {
    struct Stream: Sendable {
        var bytes: [UInt8] = []
        var endedInReset = false
        var timedOut = false
    }

    struct ConnectFailed: Error {}

    private let descriptor: Int32

    init(port: UInt16, source: UInt8? = nil) throws {
        descriptor = HTTPLoad.connect(port: port, source: source)
        guard descriptor >= 0 else { throw ConnectFailed() }
    }

    deinit { close(descriptor) }

    /// Sends `text`; a failure (the server reset the connection) shows when reading.
    func send(_ text: String) {
        _ = send(Array(text.utf8))
    }

    /// Sends all of `bytes`; false if the connection failed first (the server reset it).
    func send(_ bytes: [UInt8]) -> Bool {
        HTTPLoad.send(descriptor, bytes)
    }

    /// Everything the server sends until it closes the connection, resets it, or `timeout` seconds pass.
    func receiveUntilClosed(timeout: Int32) -> Stream {
        var stream = Stream()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var probe = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&probe, 1, timeout * 1000) > 0 else {
                stream.timedOut = true
                return stream
            }
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count > 0 {
                stream.bytes += buffer.prefix(count)
            } else if count == 0 {
                return stream
            } else if errno != EINTR {
                stream.endedInReset = errno == ECONNRESET
                return stream
            }
        }
    }

    /// Reads until one whole answer has arrived (see `answers(in:)`), leaving the connection open; what
    /// arrived if the server closed first or `timeout` seconds passed without a byte.
    func receiveAnswer(timeout: Int32) -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Self.answers(in: received).first?.whole != true {
            var probe = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&probe, 1, timeout * 1000) > 0 else { break }
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            received += buffer.prefix(count)
        }
        return received
    }

    /// The answers in a stream, each framed by its Content-Length (what the tests' servers and
    /// libmicrohttpd's own error answers send); a last answer cut short keeps what arrived of its body, and
    /// is not `whole`.
    static func answers(in bytes: [UInt8]) -> [(status: Int, body: [UInt8], whole: Bool)] {
        var rest = bytes[...]
        var answers: [(status: Int, body: [UInt8], whole: Bool)] = []
        let separator = Array("\r\n\r\n".utf8)
        while let end = rest.firstRange(of: separator) {
            let head = String(decoding: rest[..<end.lowerBound], as: UTF8.self)
            let lines = head.split(separator: "\r\n")
            let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
            let length =
                lines.dropFirst().first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let body = rest[end.upperBound...].prefix(length)
            answers.append((status, Array(body), body.count == length))
            rest = rest[(end.upperBound + body.count)...]
        }
        return answers
    }
}
