import Foundation
import Logging
import Store
import TestSupport
import Testing

private let cluster = Fixtures.clusterURI
private let logger = Logger(label: "test")
/// The fields of the HTTP API's `Operation` object (openapi.yaml), in order: the names every export uses.
private let operationFields = [
    "id", "requested_at", "finished_at", "duration_seconds", "source", "requester", "client_address", "target",
    "domain_name", "domain_uuid", "action", "state", "result", "power", "error_code", "message",
]

private func intent(_ domain: String, requester: String = "root", at seconds: Double) -> AuditIntent {
    AuditIntent(
        source: "http",
        requester: requester,
        clientAddress: "192.0.2.9",
        target: domain,
        domainName: domain,
        domainUUID: nil,
        action: "off",
        requestedAt: Date(timeIntervalSince1970: 1_800_000_000 + seconds)
    )
}

private func completion(message: String? = nil) -> AuditCompletion {
    AuditCompletion(result: .success, powerState: "off", errorCode: nil, message: message, finishedAt: Date())
}

/// The JSON objects of the lines printed so far (the last, if not ended by a newline yet, left out).
private func jsonLines(_ text: String) throws -> [[String: Any]] {
    try text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
    }
}

/// The CPU time (user + system, in clock ticks) a process has used, from /proc/PID/stat.
private func cpuTicks(_ pid: Int32) throws -> Int {
    let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    // Fields after the command name (which is in parentheses and may hold spaces): state is field 3.
    let fields = stat[stat.range(of: ")", options: .backwards)!.upperBound...].split(separator: " ")
    return Int(fields[11])! + Int(fields[12])!
}

/// Ends `running` with `signal` and returns its exit status.
private func stop(_ running: FencegateBinary.Running, with signal: Int32) async throws -> Int32 {
    kill(running.process.processIdentifier, signal)
    try await waitUntil("fencegate audit --follow exits") { !running.process.isRunning }
    return running.process.terminationStatus
}

@Suite("fencegate audit: export and follow")
struct AuditExportTests {
    /// A hostile requester: a formula, a comma, quotes, a line break, an escape and non-ASCII text.
    private static let hostile = "=cmd|' /C calc'!A0, \"x\"\r\nzweite Zeile \u{1B}[31m ✓"

    @Test("json-lines and csv print every matching row once, oldest first, across page boundaries")
    func exportAll() async throws {
        let fencegate = try FencegateBinary()
        let store = try await AuditStore.open(path: fencegate.database, logger: logger)
        // 2,345 rows (three store pages), ids in request-time order, then one with hostile text.
        try await store.insertFinished(
            (0..<2345).map { (intent($0 % 3 == 0 ? "pcmk1" : "pcmk2", at: Double($0)), completion()) }
        )
        _ = try await store.record(intent("pcmk3", requester: Self.hostile, at: 9999), completion(message: "a\nb"))

        let lines = try await fencegate.run(["audit", "--format", "json-lines"])
        #expect(lines.status == 0, "\(lines.stderr)")
        let objects = try jsonLines(lines.stdout)
        #expect(objects.compactMap { $0["id"] as? Int } == Array(1...2346))
        #expect(objects.last?["requester"] as? String == Self.hostile)
        #expect(objects.last?["message"] as? String == "a\nb")
        #expect(Set(objects.last?.keys.map { $0 } ?? []) == Set(operationFields))

        let pcmk1 = try jsonLines(
            try await fencegate.run(["audit", "--format", "json-lines", "--domain", "pcmk1"]).stdout
        )
        #expect(pcmk1.compactMap { $0["id"] as? Int } == Array(stride(from: 1, through: 2345, by: 3)))

        let csv = try await fencegate.run(["audit", "--format", "csv"])
        #expect(csv.status == 0, "\(csv.stderr)")
        let records = try #require(parseCSV(csv.stdout))
        #expect(records.first == operationFields)
        #expect(records.dropFirst().map { Int($0[0]) } == Array(1...2346))
        let last = Dictionary(uniqueKeysWithValues: zip(records[0], try #require(records.last)))
        #expect(last["requester"] == "'" + Self.hostile)
        #expect(last["message"] == "a\nb")
        #expect(last["domain_uuid"] == "")

        // --json is as before: one page of 50.
        let page = try #require(try await fencegate.json(["audit"]) as? [String: Any])
        #expect((page["operations"] as? [Any])?.count == 50)
        #expect(page["next_cursor"] is String)
    }

    @Test(
        "export options that cannot work together are refused",
        arguments: [
            ["--format", "csv", "--limit", "5"],
            ["--format", "json-lines", "--cursor", "1-1"],
            ["--follow"],
            ["--follow", "--format", "json"],
            ["--json", "--format", "csv"],
            ["--format", "csv", "--new-only"],
            ["--format", "yaml"],
            ["--format", "journal"],
            ["--follow", "--format", "csv", "--cluster", "fencegate"],
        ]
    )
    func invalidCombinations(arguments: [String]) async throws {
        let result = try await FencegateBinary().run(["audit"] + arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
    }

    @Test(
        "--follow prints what ended, then each operation once as another process commits it; idle, it uses no CPU; SIGTERM ends it with 0"
    )
    func follow() async throws {
        let fencegate = try FencegateBinary()
        #expect(try await fencegate.run(["off", "pcmk1", "--uri", cluster]).status == 0)
        let store = try await AuditStore.open(path: fencegate.database, logger: logger)
        let runningBefore = try await store.begin(intent("pcmk2", at: 1))

        let follow = try fencegate.start(["audit", "--follow", "--format", "json-lines"])
        defer { if follow.process.isRunning { kill(follow.process.processIdentifier, SIGKILL) } }
        try await waitUntil("the backlog is printed") { try jsonLines(follow.stdout).count == 1 }

        // Another process commits an operation: seen at once (inotify), not at the 5 s fallback re-check.
        #expect(try await fencegate.run(["status", "pcmk3", "--uri", cluster]).status == 0)
        let committed = ContinuousClock.now
        try await waitUntil("the new operation is printed") { try jsonLines(follow.stdout).count == 2 }
        let seenAfter = ContinuousClock.now - committed
        #expect(seenAfter < .milliseconds(2500), "printed \(seenAfter) after the commit")

        // Operations that end out of id order: each printed once, when it ends.
        let first = try await store.begin(intent("pcmk1", at: 2))
        let second = try await store.begin(intent("pcmk1", at: 3))
        try await store.complete(second, completion())
        try await waitUntil("the second operation is printed") { try jsonLines(follow.stdout).count == 3 }
        try await store.complete(runningBefore, completion())
        try await store.complete(first, completion())
        try await waitUntil("the rest is printed") { try jsonLines(follow.stdout).count == 5 }

        // Idle: no spinning while nothing is written.
        let before = try cpuTicks(follow.process.processIdentifier)
        try await Task.sleep(for: .seconds(3))
        let idleTicks = try cpuTicks(follow.process.processIdentifier) - before
        #expect(idleTicks <= 10, "\(idleTicks) ticks of CPU in 3 idle seconds")

        #expect(try await stop(follow, with: SIGTERM) == 0, "\(follow.stderr)")
        let printed = try jsonLines(follow.stdout)
        #expect(printed.compactMap { ($0["id"] as? Int).map(Int64.init) } == [1, 3, second, runningBefore, first])
        #expect(printed.allSatisfy { $0["state"] as? String == "finished" })
        #expect(follow.stdout.hasSuffix("\n"))
    }

    @Test("a database replaced under --follow ends it with an error, not silence")
    func followReplacedDatabase() async throws {
        let fencegate = try FencegateBinary()
        #expect(try await fencegate.run(["off", "pcmk1", "--uri", cluster]).status == 0)
        let follow = try fencegate.start(["audit", "--follow", "--format", "json-lines"])
        defer { if follow.process.isRunning { kill(follow.process.processIdentifier, SIGKILL) } }
        try await waitUntil("the backlog is printed") { try jsonLines(follow.stdout).count == 1 }
        // A restore: another database moved into place (its operations start at 1 again).
        let restored = fencegate.directory.file("restored.db")
        #expect(try await fencegate.run(["status", "pcmk1", "--uri", cluster, "--database", restored]).status == 0)
        #expect(rename(restored, fencegate.database) == 0)
        try await waitUntil("audit --follow exits") { !follow.process.isRunning }
        #expect(follow.process.terminationStatus != 0)
        #expect(follow.stderr.contains("was replaced or removed"), "\(follow.stderr)")
    }

    @Test("--follow --new-only as CSV prints only operations that end afterwards; SIGINT ends it with 0")
    func followNewOnly() async throws {
        let fencegate = try FencegateBinary()
        #expect(try await fencegate.run(["off", "pcmk1", "--uri", cluster]).status == 0)
        let follow = try fencegate.start(["audit", "--follow", "--new-only", "--format", "csv", "--domain", "pcmk2"])
        defer { if follow.process.isRunning { kill(follow.process.processIdentifier, SIGKILL) } }
        try await waitUntil("the header is printed") { follow.stdout.hasSuffix("\r\n") }
        #expect(try await fencegate.run(["on", "pcmk1", "--uri", cluster]).status == 0)
        #expect(try await fencegate.run(["off", "pcmk2", "--uri", cluster]).status == 0)
        try await waitUntil("the pcmk2 operation is printed") { parseCSV(follow.stdout)?.count == 2 }
        #expect(try await stop(follow, with: SIGINT) == 0, "\(follow.stderr)")
        let records = try #require(parseCSV(follow.stdout))
        #expect(records.count == 2)
        #expect(records.last?[0] == "3")
        #expect(records.last?[operationFields.firstIndex(of: "domain_name")!] == "pcmk2")
    }
}

/// The fields of one journal entry in systemd's native protocol (`KEY=value\n`, or `KEY\n` + 64-bit
/// little-endian length + bytes + `\n`); nil if it breaks the format.
private func journalFields(_ text: String) -> [String: String]? {
    var bytes = Array(text.utf8)[...]
    var fields: [String: String] = [:]
    while !bytes.isEmpty {
        guard let end = bytes.firstIndex(where: { $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "\n") }) else {
            return nil
        }
        let key = String(decoding: bytes[..<end], as: UTF8.self)
        let value: ArraySlice<UInt8>
        if bytes[end] == UInt8(ascii: "=") {
            guard let newline = bytes[end...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            value = bytes[(end + 1)..<newline]
            bytes = bytes[(newline + 1)...]
        } else {
            let start = end + 1 + 8
            guard bytes.endIndex >= start else { return nil }
            let length = bytes[(end + 1)..<start].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            guard bytes.endIndex > start + length, bytes[start + length] == UInt8(ascii: "\n") else { return nil }
            value = bytes[start..<(start + length)]
            bytes = bytes[(start + length + 1)...]
        }
        fields[key] = String(decoding: value, as: UTF8.self)
    }
    return fields
}

@Suite("fencegate audit --follow --format journal")
struct AuditJournalTests {
    @Test("each operation that ends is one journal entry with structured fields; values with newlines binary-safe")
    func journal() async throws {
        let fencegate = try FencegateBinary()
        let socket = try NotifySocket(path: fencegate.directory.file("journal.socket"))
        let store = try await AuditStore.open(path: fencegate.database, logger: logger)
        // The log is empty: the row below is sent once, whether written before the follower's first read or after.
        let follow = try fencegate.start([
            "audit", "--follow", "--format", "journal", "--journal-socket", socket.path,
        ])
        defer { if follow.process.isRunning { kill(follow.process.processIdentifier, SIGKILL) } }
        let id = try await store.record(
            intent("pcmk1", requester: "mallory\nFENCEGATE_RESULT=success", at: 1),
            AuditCompletion(
                result: .failure,
                powerState: nil,
                errorCode: "hypervisor_unavailable",
                message: "line one\nline two",
                finishedAt: Date()
            )
        )
        let entry = try #require(try await socket.receive(timeout: .seconds(20)))
        let fields = try #require(journalFields(entry), "\(entry.debugDescription)")
        #expect(fields["FENCEGATE_ID"] == String(id))
        #expect(fields["FENCEGATE_RESULT"] == "failure")
        #expect(fields["FENCEGATE_REQUESTER"] == "mallory\nFENCEGATE_RESULT=success")
        #expect(fields["FENCEGATE_MESSAGE"] == "line one\nline two")
        #expect(fields["FENCEGATE_ERROR_CODE"] == "hypervisor_unavailable")
        #expect(fields["FENCEGATE_DOMAIN_UUID"] == nil)
        #expect(fields["PRIORITY"] == "3")
        #expect(fields["SYSLOG_IDENTIFIER"] == "fencegate")
        #expect(fields["MESSAGE"]?.hasPrefix("off pcmk1 ") == true)
        #expect(try await stop(follow, with: SIGTERM) == 0, "\(follow.stderr)")
    }
}
