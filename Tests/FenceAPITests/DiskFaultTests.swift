import FenceCore
import Foundation
import TestSupport
import Testing

/// A small tmpfs mounted by the test (root only, as CI runs), holding the audit log, so that the disk can
/// really fill up under the running service.
final class SmallFilesystem: @unchecked Sendable {
    let path: String
    private let parent: TemporaryDirectory

    static var isAvailable: Bool { geteuid() == 0 }

    init(megabytes: Int) async throws {
        parent = try TemporaryDirectory()
        path = parent.file("mnt")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try await Self.mount(["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", path])
    }

    static func mount(_ arguments: [String]) async throws {
        let result = try await runProgram("/bin/mount", arguments)
        guard result.status == 0 else { throw ConditionNeverMet(description: "mount \(arguments): \(result.stderr)") }
    }

    /// Writes a file until the filesystem is full; returns its path.
    func fill() throws -> String {
        let filler = path + "/filler"
        let descriptor = open(filler, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw ConditionNeverMet(description: "cannot create \(filler)") }
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 0x55, count: 4096)
        while chunk.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
        return filler
    }

    deinit {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/umount")
        process.arguments = ["-l", path]
        try? process.launchSerialized()
        process.waitUntilExit()
    }
}

@Suite("Disk faults under the running service", .enabled(if: SmallFilesystem.isAvailable, "needs root to mount a tmpfs"))
struct DiskFaultTests {
    @Test("a full disk refuses fences with 503 and does nothing; freeing space brings the service back")
    func fullDisk() async throws {
        let filesystem = try await SmallFilesystem(megabytes: 4)
        try await APIHarness.withRunning(databasePath: filesystem.path + "/audit.db") { api in
            #expect(try await api.curl("POST", "/domains/pcmk1/off", token: api.ops).status == 200)
            let filler = try filesystem.fill()
            var refused = 0
            for domain in ["pcmk2", "pcmk3", "pcmk4"] {
                let response = try await api.curl("POST", "/domains/\(domain)/off", token: api.ops)
                #expect(response.status == 503, "\(domain): \(response.status) \(response.text)")
                #expect(response.json["type"] as? String == "urn:fencegate:problem:audit-unavailable")
                #expect(try api.harness.state(domain) == .running, "\(domain) was fenced without its audit row")
                refused += response.status == 503 ? 1 : 0
            }
            #expect(refused == 3)
            try FileManager.default.removeItem(atPath: filler)
            let again = try await api.curl("POST", "/domains/pcmk2/off", token: api.ops)
            #expect(again.status == 200, "\(again.text)")
            #expect(try api.harness.state("pcmk2") == .shutOff)
        }
    }
}
