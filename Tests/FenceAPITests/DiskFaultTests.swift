import FenceCore
import Foundation
import TestSupport
import Testing

@testable import Store

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

    /// Writes a file until the filesystem is full, or has only `leaving` bytes free; returns its path. Called
    /// again, it adds to the same file.
    @discardableResult
    func fill(leaving: Int = 0) throws -> String {
        let filler = path + "/filler"
        let descriptor = open(filler, O_CREAT | O_WRONLY | O_APPEND, 0o600)
        guard descriptor >= 0 else { throw ConditionNeverMet(description: "cannot create \(filler)") }
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 0x55, count: 4096)
        while leaving == 0 || freeBytes > leaving,
            chunk.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0
        {}
        return filler
    }

    /// Bytes free for an unprivileged writer.
    var freeBytes: Int {
        var status = statvfs()
        return statvfs(path, &status) == 0 ? Int(status.f_bavail) * Int(status.f_frsize) : 0
    }

    deinit {
        unmountLazily(path)
    }
}

/// An ext4 image on a loop device, mounted by the test (root only) with `errors=remount-ro`, so that a
/// filesystem error turns it read-only under the running service, as a failing disk does.
final class LoopFilesystem: @unchecked Sendable {
    let path: String
    private let parent: TemporaryDirectory

    /// Root with loop devices (CI: a fresh machine, as root). mkfs.ext4 comes from install-dependencies.
    static var isAvailable: Bool { geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control") }

    init(megabytes: Int) async throws {
        parent = try TemporaryDirectory()
        path = parent.file("mnt")
        let image = parent.file("ext4.img")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: image, contents: nil),
            truncate(image, off_t(megabytes) << 20) == 0
        else { throw ConditionNeverMet(description: "cannot create \(image)") }
        let format = try await runProgram("/sbin/mkfs.ext4", ["-q", "-F", image])
        guard format.status == 0 else { throw ConditionNeverMet(description: "mkfs.ext4: \(format.stderr)") }
        try await SmallFilesystem.mount(["-o", "loop,errors=remount-ro", image, path])
        chmod(path, 0o700)
    }

    /// Reports an error to ext4 (its `trigger_fs_error` knob), which then remounts the filesystem read-only.
    func failIntoReadOnly() async throws {
        let source = try await runProgram("/bin/findmnt", ["-n", "-o", "SOURCE", path])
        let device = URL(fileURLWithPath: source.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            .lastPathComponent
        try Data("1".utf8).write(to: URL(fileURLWithPath: "/sys/fs/ext4/\(device)/trigger_fs_error"))
        let options = try await runProgram("/bin/findmnt", ["-n", "-o", "OPTIONS", path])
        guard options.stdout.hasPrefix("ro") || options.stdout.contains("emergency_ro") else {
            throw ConditionNeverMet(description: "\(path) is still writable: \(options.stdout)")
        }
    }

    deinit {
        unmountLazily(path)
    }
}

@Suite(
    "Disk faults under the running service",
    .enabled(if: SmallFilesystem.isAvailable, "needs root to mount a tmpfs")
)
struct DiskFaultTests {
    @Test(
        "with no space kept for fences, a full disk refuses fences with 503 and does nothing; freeing space brings the service back"
    )
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
            let health = try await api.curl("GET", "/healthz")
            #expect(health.status == 503 && health.json["audit_log"] as? String == "unavailable", "\(health.text)")
            // Each scrape checks the audit log: the gauge the alert FencegateAuditLogNotWritable watches.
            let metrics = try await api.curl("GET", "/metrics", token: api.ops).text
            #expect(metrics.contains("fencegate_audit_log_writable 0.0\n"), "\(metrics)")
            try FileManager.default.removeItem(atPath: filler)
            let again = try await api.curl("GET", "/metrics", token: api.ops).text
            #expect(again.contains("fencegate_audit_log_writable 1.0\n"), "\(again)")
            #expect(try await api.curl("GET", "/healthz").status == 200)
            let fence = try await api.curl("POST", "/domains/pcmk2/off", token: api.ops)
            #expect(fence.status == 200, "\(fence.text)")
            #expect(try api.harness.state("pcmk2") == .shutOff)
        }
    }

    @Test(
        "a full disk does not stop fencing: fences use the space kept for them, reads and refusals are only counted, and the space is kept again once freed"
    )
    func fullDiskWithReserve() async throws {
        let filesystem = try await SmallFilesystem(megabytes: 48)
        var reserve = AuditSpaceReserve()
        reserve.lowWater = 8 << 20
        reserve.highWater = 16 << 20
        reserve.refillInterval = .zero
        let databasePath = filesystem.path + "/audit.db"
        weak var firstStore: AuditStore?
        var filler = ""
        try await APIHarness.withRunning(databasePath: databasePath, reserve: reserve) { api in
            #expect(try await api.curl("POST", "/domains/pcmk1/off", token: api.ops).status == 200)
            #expect(!api.harness.store.reserveInUse)
            // Below the low-water mark: the next commit frees the space kept.
            filler = try filesystem.fill(leaving: 6 << 20)
            #expect(try await api.curl("POST", "/domains/pcmk1/on", token: api.ops).status == 200)
            #expect(api.harness.store.reserveInUse)
            // Then someone else takes every byte left.
            try filesystem.fill()
            #expect(filesystem.freeBytes < 64 << 10, "\(filesystem.freeBytes) bytes still free")
            var answered: [Int] = []
            // 200 fences: several checkpoints' worth, each reusing the write-ahead log, while audit queries read
            // the log beside them (a reader delays the log's restart).
            let baseURL = api.baseURL
            let viewer = api.viewer
            let readers = Task {
                var answered = 0
                while !Task.isCancelled {
                    let query = try await runProgram(
                        "/usr/bin/curl",
                        [
                            "-s", "-o", "/dev/null", "-H", "Authorization: Bearer \(viewer)",
                            "\(baseURL)/operations?limit=200",
                        ]
                    )
                    answered += query.status == 0 ? 1 : 0
                }
                return answered
            }
            for round in 0..<50 {
                for domain in ["pcmk2", "pcmk3"] {
                    let off = try await api.curl("POST", "/domains/\(domain)/off", token: api.ops)
                    answered.append(off.status)
                    #expect(try api.harness.state(domain) == .shutOff, "round \(round): \(off.text)")
                    let on = try await api.curl("POST", "/domains/\(domain)/on", token: api.ops)
                    answered.append(on.status)
                    #expect(try api.harness.state(domain) == .running, "round \(round): \(on.text)")
                }
            }
            readers.cancel()
            #expect(try await readers.value > 0)
            #expect(answered == Array(repeating: 200, count: 200), "\(answered.filter { $0 != 200 })")
            // Reads are answered and refusals refused, neither recorded: the space is the fences'.
            #expect(try await api.curl("GET", "/domains/pcmk4", token: api.viewer).status == 200)
            #expect(try await api.curl("POST", "/domains/pcmk4/off").status == 401)
            let metrics = try await api.curl("GET", "/metrics", token: api.viewer).text
            #expect(metrics.contains("fencegate_audit_reserve_in_use 1.0\n"), "\(metrics)")
            #expect(metrics.contains("fencegate_audit_log_writable 1.0\n"), "\(metrics)")
            #expect(metrics.contains(#"fencegate_audit_rows_spared_total{kind="read"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"fencegate_audit_rows_spared_total{kind="refusal"} 1"#), "\(metrics)")
            let rows = try await api.harness.rows()
            #expect(rows.filter { ["off", "on"].contains($0.action) && $0.result == .success }.count == 202)
            #expect(rows.allSatisfy { $0.state == .finished }, "\(rows.filter { $0.state != .finished })")
            #expect(!rows.contains { $0.action == "status" || $0.result == .refused })
            firstStore = api.harness.store
        }
        // A restart on the full disk: the write-ahead log kept its file and size, and fences go on.
        try await waitUntil("the first store is closed") { firstStore == nil }
        let walBytes = try #require(
            try FileManager.default.attributesOfItem(atPath: databasePath + "-wal")[.size] as? Int
        )
        #expect(walBytes >= reserve.bytes, "\(walBytes)")
        let restarted = try await ServiceHarness(databasePath: databasePath, reserve: reserve)
        #expect(restarted.store.reserveInUse)
        for domain in ["pcmk2", "pcmk3"] {
            #expect(try await restarted.perform(.off, domain).domain.state == .shutOff)
        }
        // Space freed: the next commit keeps the reserve again.
        try FileManager.default.removeItem(atPath: filler)
        #expect(try await restarted.perform(.on, "pcmk2").domain.state == .running)
        #expect(!restarted.store.reserveInUse)
        try await restarted.service.checkAuditLog()
        let metrics = String(decoding: restarted.service.metrics.exposition(), as: UTF8.self)
        #expect(metrics.contains("fencegate_audit_reserve_in_use 0.0\n"), "\(metrics)")
        let database = try Database(path: databasePath, access: .readOnly)
        #expect(try database.query("PRAGMA integrity_check").first?.first?.text == "ok")
        #expect(try database.query("SELECT length(filler) FROM reserve").first?.first?.integer == 4 << 20)
    }

    @Test(
        "a filesystem turned read-only by an error refuses fences with 503 and does nothing; reads still work",
        .enabled(if: LoopFilesystem.isAvailable, "needs root and loop devices")
    )
    func readOnlyFilesystem() async throws {
        let filesystem = try await LoopFilesystem(megabytes: 16)
        let databasePath = filesystem.path + "/audit.db"
        try await APIHarness.withRunning(databasePath: databasePath) { api in
            #expect(try await api.curl("POST", "/domains/pcmk1/off", token: api.ops).status == 200)
            try await filesystem.failIntoReadOnly()
            for domain in ["pcmk2", "pcmk3"] {
                let response = try await api.curl("POST", "/domains/\(domain)/off", token: api.ops)
                #expect(response.status == 503, "\(domain): \(response.status) \(response.text)")
                #expect(
                    response.json["type"] as? String == "urn:fencegate:problem:audit-unavailable",
                    "\(response.text)"
                )
                #expect(try api.harness.state(domain) == .running, "\(domain) was fenced without its audit row")
            }
            let health = try await api.curl("GET", "/healthz")
            #expect(health.status == 503 && health.json["audit_log"] as? String == "unavailable", "\(health.text)")
            // The hypervisor side still answers: an administrator can see what is running.
            #expect(
                try await api.curl("GET", "/domains/pcmk2", token: api.viewer).json["state"] as? String == "running"
            )
        }
        // A restart on the read-only filesystem is refused with a clear error, not a half-working service.
        await #expect {
            _ = try await AuditStore.open(path: databasePath, logger: ServiceHarness.logger)
        } throws: { error in
            guard case AuditStoreError.cannotOpen(_, let reason) = error else { return false }
            return reason.contains("read-only")
        }
        // The log written before the fault can still be read.
        let readOnly = try await AuditStore.open(path: databasePath, readOnly: true, logger: ServiceHarness.logger)
        let rows = try await readOnly.query(AuditQuery(action: "off", limit: 10)).records
        #expect(rows.map(\.target) == ["pcmk1"] && rows.first?.result == .success, "\(rows)")
    }
}
