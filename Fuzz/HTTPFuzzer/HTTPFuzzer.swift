import FenceAPI
import FenceCore
import Foundation
import FuzzSupport
import Logging
import Store

/// The HTTP API (Redfish included) over libvirt's test driver and an audit log in /dev/shm, set up once per
/// fuzzing process, with one fence token that inputs can use by writing `@TOKEN@` (a bearer token) or
/// `@BASIC@` (Redfish's Basic credentials for it).
final class Target: @unchecked Sendable {
    let api: FenceHTTPAPI
    let token: String

    static let shared: Target = {
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        Task {
            var logger = Logger(label: "fuzz")
            logger.logLevel = .critical
            let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
            let path = "\(directory)/fencegate-fuzz-\(getpid()).db"
            databasePath = path
            atexit {
                guard let path = databasePath else { return }
                for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
            }
            let store = try! await AuditStore.open(path: path, logger: logger)
            let token = try! await AccessTokens(store: store).create(name: "fuzz", scope: .fence, domainPatterns: []).secret
            let service = FenceService(
                hypervisor: LibvirtHypervisor(uri: "test:///default", logger: logger), store: store, logger: logger)
            box.target = Target(api: FenceHTTPAPI(service: service, logger: logger, redfish: true), token: token)
            done.signal()
        }
        done.wait()
        return box.target!
    }()

    private init(api: FenceHTTPAPI, token: String) {
        self.api = api
        self.token = token
    }

    private final class Box: @unchecked Sendable { var target: Target? }
}

/// The fuzzing database, removed when the process exits.
nonisolated(unsafe) var databasePath: String?

/// Statuses the API documents; anything else (500 above all) is a bug.
let documentedStatuses: Set<Int> = [200, 204, 400, 401, 403, 404, 405, 409, 413, 502, 503, 504]

/// Input: method line, path line (with an optional `?query`), header lines, an empty line, then the body.
func fuzzOne(_ bytes: [UInt8]) {
    let target = Target.shared
    var lines = bytes.split(separator: 0x0A, maxSplits: 64, omittingEmptySubsequences: false).map {
        // libmicrohttpd hands the router C strings: no NUL inside.
        String(decoding: $0.filter { $0 != 0 }, as: UTF8.self).replacingOccurrences(of: "@TOKEN@", with: target.token)
            .replacingOccurrences(of: "@BASIC@", with: "Basic " + Data("fuzz:\(target.token)".utf8).base64EncodedString())
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
            if query[String(nameValue[0])] == nil { query[String(nameValue[0])] = nameValue.count == 2 ? String(nameValue[1]) : "" }
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
        method: method, path: String(parts.first ?? "/"), query: query, headers: headers, body: body,
        clientAddress: "198.18.0.9")

    let box = ResponseBox()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.response = await target.api.handle(request)
        done.signal()
    }
    done.wait()
    let response = box.response!
    precondition(documentedStatuses.contains(response.status), "undocumented status \(response.status) for \(method) \(requestTarget)")
    if response.headers.contains(where: { $0.0.lowercased() == "content-type" && $0.1.contains("json") }) {
        precondition(
            (try? JSONSerialization.jsonObject(with: Data(response.body))) != nil, "a JSON answer that does not parse")
    }
}

final class ResponseBox: @unchecked Sendable { var response: HTTPResponse? }

#if FUZZING
@_cdecl("fuzz_http_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc: argc, argv: argv, fuzzOne)
}
#else
/// Without libFuzzer: replays the files given as arguments (a corpus, or a crash to reproduce).
@main
struct ReplayCorpus {
    static func main() { replayCorpus(CommandLine.arguments.dropFirst(), fuzzOne) }
}
#endif
