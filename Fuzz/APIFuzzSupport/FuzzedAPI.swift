public import FenceAPI
import FenceCore
import Foundation
import FuzzSupport
import Logging
import Store

/// The real HTTP API, Redfish front end included, over libvirt's test driver and an audit log in a directory
/// of its own in /dev/shm (removed at exit), set up once per fuzzing process, with one fence token that inputs name by writing
/// `@TOKEN@` (the bearer secret) or `@BASIC@` (Redfish's Basic credentials for it).
public final class FuzzedAPI: Sendable {
    public let api: FenceHTTPAPI
    /// The fence token's secret.
    public let token: String
    /// `Basic base64(fuzz:token)`.
    public let basicCredentials: String

    /// Statuses the API documents (openapi.yaml, and the Redfish subset); anything else, 500 above all,
    /// is a bug.
    public static let documentedStatuses: Set<Int> = [200, 204, 400, 401, 403, 404, 405, 409, 413, 502, 503, 504]

    public static let shared: FuzzedAPI = waitFor {
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        // A private directory (0700) in /dev/shm: the audit store refuses a database whose own directory
        // others may write, as the sticky /dev/shm is.
        let parent = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let directory = "\(parent)/fencegate-fuzz-\(getpid())"
        mkdir(directory, 0o700)
        let path = "\(directory)/audit.db"
        databasePath = path
        atexit {
            guard let path = databasePath else { return }
            for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
            rmdir((path as NSString).deletingLastPathComponent)
        }
        let store = try! await AuditStore.open(path: path, logger: logger)
        let token = try! await AccessTokens(store: store).create(name: "fuzz", scope: .fence, domainPatterns: []).secret
        let service = FenceService(
            hypervisor: LibvirtHypervisor(uri: "test:///default", logger: logger),
            store: store,
            logger: logger
        )
        // An audit log of a few hundred operations, as a server in use has: `GET /operations?limit=…` can then
        // answer hundreds of kilobytes, more than a loopback connection's receive window holds (answers cut
        // short by a reset were found only with such a log).
        for _ in 0..<seededOperations {
            let origin = RequestOrigin(frontEnd: .cli, requester: "fuzz-seed")
            _ = try? await service.perform(FenceRequest(action: .on, target: "test", origin: origin))
        }
        return FuzzedAPI(api: FenceHTTPAPI(service: service, logger: logger, redfish: true), token: token)
    }

    /// Operations in the audit log before the first input.
    public static let seededOperations = 300

    private init(api: FenceHTTPAPI, token: String) {
        self.api = api
        self.token = token
        basicCredentials = "Basic " + Data("fuzz:\(token)".utf8).base64EncodedString()
    }

    /// `bytes` with every `@TOKEN@` and `@BASIC@` replaced by the credentials; byte for byte otherwise.
    /// (memchr finds the markers: a loop over the bytes would call a coverage hook for each.)
    public func substitutingCredentials(in bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return bytes }
            var result: [UInt8] = []
            var copied = 0
            var searched = 0
            while let found = memchr(base + searched, Int32(UInt8(ascii: "@")), buffer.count - searched) {
                let at = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
                guard let (marker, replacement) = markers.first(where: { buffer[at...].starts(with: $0.marker) }) else {
                    searched = at + 1
                    continue
                }
                result += buffer[copied..<at]
                result += replacement.utf8
                copied = at + marker.count
                searched = copied
            }
            guard copied > 0 else { return bytes }
            result += buffer[copied...]
            return result
        }
    }

    /// What inputs write, and what it stands for.
    private var markers: [(marker: [UInt8], replacement: String)] {
        [(Array("@TOKEN@".utf8), token), (Array("@BASIC@".utf8), basicCredentials)]
    }

    /// Whether a response body with a JSON content type parses.
    public static func isJSON(_ body: [UInt8]) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(body))) != nil
    }
}

/// The fuzzing database, removed when the process exits.
nonisolated(unsafe) private var databasePath: String?
