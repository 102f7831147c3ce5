import APIFuzzSupport
import FenceAPI
import Foundation
import FuzzSupport
import Logging

/// The project's `HTTPServer` (libmicrohttpd) on 127.0.0.1, a free port, in front of the real API (see
/// `FuzzedAPI`), started once per fuzzing process.
final class FuzzedServer: Sendable {
    let server: HTTPServer

    static let shared = FuzzedServer()

    private init() {
        let api = FuzzedAPI.shared.api
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        var configuration = HTTPServerConfiguration()
        configuration.listen = ListenAddress(host: "127.0.0.1", port: 0)
        do {
            server = try HTTPServer(configuration: configuration, logger: logger) { await api.handle($0) }
        } catch {
            preconditionFailure("cannot start the HTTP server: \(error)")
        }
        // Answers for the rest of the fuzzing process.
        Task { [server] in await server.run() }
    }
}

/// Statuses libmicrohttpd 0.9.75 answers on its own (src/microhttpd/connection.c): 100 Continue for
/// `Expect: 100-continue`; 400 for a malformed request line, header field, chunk or Content-Length; 413 for
/// a chunk size or Content-Length too large to represent; 414 and 431 for a request line or header fields
/// beyond the connection's memory (32 KiB); 505 for an unsupported HTTP version; and 500 when a request's
/// data fills the connection's memory before it can be handed on (see `libmicrohttpdInternalError`).
let libmicrohttpdStatuses: Set<Int> = [100, 400, 413, 414, 431, 500, 505]

/// libmicrohttpd's own 500 page (INTERNAL_ERROR in connection.c), sent without a Content-Type. It answers,
/// for one, a chunk-size line longer than the connection's memory: that is libmicrohttpd's limit, not a
/// failure of our code, whose 500s are `application/problem+json`.
let libmicrohttpdInternalError = Array(
    ("<html><head><title>Internal server error</title></head><body>Please ask the developer of this Web "
        + "server to carefully read the GNU libmicrohttpd documentation about connection management and "
        + "blocking.</body></html>").utf8
)

/// How long the server may take to answer an input (or the health check) and close the connection.
let answerDeadline: Duration = .seconds(5)

/// One input as raw bytes on a fresh TCP connection to the running server (`@TOKEN@` and `@BASIC@` become
/// the fuzzing token's credentials), written in one to three parts that the server reads one by one; then
/// the client's side is shut down, and everything the server sends is read until it closes. Invariants,
/// checked with `precondition` so that a violation is a crash the fuzzer reports:
/// - the server closes the connection within `answerDeadline`;
/// - what it sent is a sequence of well-formed HTTP/1.x responses (see `responses(in:)`), possibly none,
///   none of them cut short;
/// - the connection ends in the server's FIN, never in a reset: the server closes in stages (see
///   `LingeringClose`), so a reset here means it dropped something it had not yet delivered, even a whole
///   answer after the last one received, which the client has no other way to notice;
/// - every status is documented by the API or is one libmicrohttpd sends itself, a 500 is libmicrohttpd's
///   own page and never one from our code, and a JSON body parses;
/// - afterwards a plain `GET /healthz` on a new connection still gets 200.
func fuzzOne(_ input: [UInt8]) {
    let port = FuzzedServer.shared.server.port
    let bytes = FuzzedAPI.shared.substitutingCredentials(in: input)
    var connection = ClientConnection(port: port, waitingForReads: true)
    for part in parts(of: bytes) {
        guard connection.send(part) else { break }  // the server answered and closed before reading it all
    }
    connection.finishSending()
    guard let stream = connection.receiveUntilClosed(by: .now + answerDeadline) else {
        preconditionFailure("the server neither closed the connection nor stopped sending within \(answerDeadline)")
    }
    let answers = responses(in: stream)
    precondition(
        !stream.endedInReset,
        "the connection ended in a reset after \(answers.count) whole answers: the server dropped what it had not yet sent"
    )
    check(answers, headRequested: contains(Array("HEAD".utf8), in: bytes))
    precondition(healthStatus(port: port) == 200, "GET /healthz no longer answers 200 after this input")
}

/// Whether `pattern` occurs in `bytes` (memchr finds its first byte: a loop over the bytes would call a
/// coverage hook for each).
func contains(_ pattern: [UInt8], in bytes: [UInt8]) -> Bool {
    guard let first = pattern.first else { return true }
    return bytes.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return false }
        var searched = 0
        while let found = memchr(base + searched, Int32(first), buffer.count - searched) {
            let at = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            if buffer[at...].starts(with: pattern) { return true }
            searched = at + 1
        }
        return false
    }
}

/// Where the input is cut, a function of its length and first and last bytes, so that an input always
/// travels the same way: in one part, or two, or three.
func parts(of bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    var hash: UInt32 = 2_166_136_261  // FNV-1a
    for byte in bytes.prefix(8) + bytes.suffix(8) + [UInt8(truncatingIfNeeded: bytes.count)] {
        hash = (hash ^ UInt32(byte)) &* 16_777_619
    }
    let candidates = [Int(hash >> 8), Int(hash >> 20)].prefix(Int(hash % 3))
    let cuts = Set(candidates.map { $0 % max(bytes.count, 1) }).filter { $0 > 0 }.sorted()
    var parts: [ArraySlice<UInt8>] = []
    var start = 0
    for cut in cuts {
        parts.append(bytes[start..<cut])
        start = cut
    }
    parts.append(bytes[start...])
    return parts
}

/// The invariants of everything the server sent for one input. A body announced by Content-Length may
/// be left out only if the input holds a HEAD request, or in one case of libmicrohttpd's: for a malformed
/// or too large Content-Length, 0.9.75 sends the header block of its error answer twice, the first time
/// without the body.
func check(_ answers: [SentResponse], headRequested: Bool) {
    for (index, response) in answers.enumerated() {
        if response.body == nil && !headRequested {
            let next = answers.dropFirst(index + 1).first
            let repeatedHeaderBlock = next.map { $0.status == response.status && isLibmicrohttpdError($0) } == true
            precondition(
                isLibmicrohttpdError(response) && repeatedHeaderBlock,
                "a \(response.status) answer without the body its Content-Length announces"
            )
        }
        check(response)
    }
}

/// Whether libmicrohttpd wrote the answer itself: one of its statuses, no Content-Type (ours always have
/// one), and the connection closed after it.
func isLibmicrohttpdError(_ response: SentResponse) -> Bool {
    libmicrohttpdStatuses.contains(response.status) && response.header("Content-Type") == nil
        && response.header("Connection")?.lowercased() == "close"
}

/// The invariants of one response.
func check(_ response: SentResponse) {
    let status = response.status
    precondition(
        FuzzedAPI.documentedStatuses.contains(status) || libmicrohttpdStatuses.contains(status),
        "undocumented status \(status)"
    )
    if status == 500 {
        precondition(
            isLibmicrohttpdError(response) && (response.body == nil || response.body == libmicrohttpdInternalError),
            "a 500 that is not libmicrohttpd's own page: \(String(decoding: response.body ?? [], as: UTF8.self))"
        )
    }
    if let contentType = response.header("Content-Type"), contentType.contains("json"), let body = response.body {
        precondition(FuzzedAPI.isJSON(body), "a JSON answer that does not parse")
    }
}

/// The status of `GET /healthz` on a new connection; 0 if there is no well-formed answer.
func healthStatus(port: UInt16) -> Int {
    var connection = ClientConnection(port: port, waitingForReads: false)
    _ = connection.send(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)[...])
    guard let stream = connection.receiveUntilClosed(by: .now + answerDeadline) else { return 0 }
    let answers = responses(in: stream)
    return answers.count == 1 ? answers[0].status : 0
}

#if FUZZING
@_cdecl("fuzz_mhd_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc: argc, argv: argv, leakDetection: .periodic(interval: .seconds(2)), fuzzOne)
}
#else
/// Without libFuzzer: replays the files given as arguments (a corpus, or a crash to reproduce).
@main
struct ReplayCorpus {
    static func main() { replayCorpus(CommandLine.arguments.dropFirst(), fuzzOne) }
}
#endif
