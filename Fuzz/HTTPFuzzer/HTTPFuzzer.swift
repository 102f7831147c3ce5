import APIFuzzSupport
import FenceAPI
import Foundation
import FuzzSupport

/// Input: method line, path line (with an optional `?query`), header lines, an empty line, then the body;
/// `@TOKEN@` and `@BASIC@` become the fuzzing token's credentials (see `FuzzedAPI`). The request goes to
/// the real API (routing, Redfish, service, audit log) without a socket. Invariants, checked with
/// `precondition` so that a violation is a crash the fuzzer reports: only documented statuses (never 500),
/// and a JSON answer parses.
func fuzzOne(_ bytes: [UInt8]) {
    let fuzzed = FuzzedAPI.shared
    // libmicrohttpd hands the router C strings: no NUL inside.
    let text = fuzzed.substitutingCredentials(in: bytes.filter { $0 != 0 })
    var lines = text.split(separator: 0x0A, maxSplits: 64, omittingEmptySubsequences: false).map {
        String(decoding: $0, as: UTF8.self)
    }
    let methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]
    let methodLine = lines.isEmpty ? "GET" : lines.removeFirst()
    let method = methods.contains(methodLine) ? methodLine : "POST"
    let requestTarget = lines.isEmpty ? "/" : lines.removeFirst()
    let parts = requestTarget.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    var query: [String: String] = [:]
    if parts.count == 2 {
        for pair in parts[1].split(separator: "&") {
            let nameValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if query[String(nameValue[0])] == nil {
                query[String(nameValue[0])] = nameValue.count == 2 ? String(nameValue[1]) : ""
            }
        }
    }
    var headers: [String: String] = [:]
    while let line = lines.first, !line.isEmpty {
        lines.removeFirst()
        let nameValue = line.split(separator: ":", maxSplits: 1)
        guard nameValue.count == 2 else { continue }
        let name = nameValue[0].lowercased()
        if headers[name] == nil { headers[name] = nameValue[1].trimmingCharacters(in: .whitespaces) }
    }
    let body = Array(lines.dropFirst().joined(separator: "\n").utf8)
    let request = HTTPRequest(
        method: method,
        path: String(parts.first ?? "/"),
        query: query,
        headers: headers,
        body: body,
        clientAddress: "198.18.0.9"
    )

    let response = waitFor { await fuzzed.api.handle(request) }
    precondition(
        FuzzedAPI.documentedStatuses.contains(response.status),
        "undocumented status \(response.status) for \(method) \(requestTarget)"
    )
    if response.headers.contains(where: { $0.0.lowercased() == "content-type" && $0.1.contains("json") }) {
        precondition(FuzzedAPI.isJSON(response.body), "a JSON answer that does not parse")
    }
}

#if FUZZING
@_cdecl("fuzz_http_main")
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
