import Foundation
import Logging
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")

private func intent(
    domain: String = "pcmk1",
    action: String = "off",
    source: String = "cli",
    requester: String? = "alice",
    at date: Date = Date()
) -> AuditIntent {
    AuditIntent(
        source: source,
        requester: requester,
        clientAddress: nil,
        target: domain,
        domainName: domain,
        domainUUID: nil,
        action: action,
        requestedAt: date
    )
}

private func completion(_ result: AuditResult, power: String? = "off") -> AuditCompletion {
    AuditCompletion(result: result, powerState: power, errorCode: nil, message: nil, finishedAt: Date())
}

@Suite("Audit store: schema, rows, recovery")
struct AuditStoreTests {
    @Test("a new database is created with mode 0600, in WAL mode, at the latest schema version")
    func createsDatabase() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(path: path, logger: logger)
        _ = try await store.begin(intent())
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        let database = try Database(path: path, access: .readOnly)
        #expect(try database.query("PRAGMA journal_mode").first?.first == .text("wal"))
        let versions = try database.query("SELECT version, name FROM schema_migrations ORDER BY version")
        #expect(versions.map { $0[0] } == Migration.all.map { .integer(Int64($0.version)) })
    }

    @Test("re-opening does not re-apply migrations, and a newer schema is refused")
    func migrationsRunOnce() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        _ = try await AuditStore.open(path: path, logger: logger)
        _ = try await AuditStore.open(path: path, logger: logger)
        let database = try Database(path: path)
        #expect(
            try database.query("SELECT COUNT(*) FROM schema_migrations")[0][0] == .integer(Int64(Migration.all.count))
        )

        try database.query("INSERT INTO schema_migrations VALUES (999, 'from the future', 0)")
        await #expect {
            _ = try await AuditStore.open(path: path, logger: logger)
        } throws: { error in
            guard case AuditStoreError.newerSchema(_, let found, _) = error else { return false }
            return found == 999
        }
    }

    @Test("an unopenable path is a clear error")
    func unopenablePath() async throws {
        await #expect {
            _ = try await AuditStore.open(path: "/proc/no-such-dir/audit.db", logger: logger)
        } throws: { error in
            guard case AuditStoreError.cannotOpen(let path, _) = error else { return false }
            return path == "/proc/no-such-dir/audit.db"
        }
    }

    @Test("begin writes a started row that another connection sees at once; complete finishes it once")
    func beginAndComplete() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(path: path, logger: logger)
        let requested = Date()
        let id = try await store.begin(intent(at: requested))

        let observer = try await AuditStore.open(path: path, logger: logger)
        let started = try #require(try await observer.operation(id: id))
        #expect(started.state == .started)
        #expect(started.result == nil)
        #expect(started.domainName == "pcmk1")
        #expect(abs(started.requestedAt.timeIntervalSince(requested)) < 0.001)

        #expect(try await store.complete(id, completion(.success)) == true)
        #expect(try await store.complete(id, completion(.failure)) == false)
        let finished = try #require(try await observer.operation(id: id))
        #expect(finished.state == .finished)
        #expect(finished.result == .success)
        #expect(finished.powerState == "off")
        #expect(finished.duration != nil)
        #expect(try await store.operation(id: id + 100) == nil)
    }

    @Test("a note appended before the completion is kept, whichever write lands first")
    func noteBeforeCompletion() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let id = try await store.begin(intent())
        try await store.appendNote(id, "finished late")
        try await store.complete(
            id,
            AuditCompletion(
                result: .timedOut,
                powerState: nil,
                errorCode: "timed_out",
                message: "timed out",
                finishedAt: Date()
            )
        )
        #expect(try await store.operation(id: id)?.message == "timed out; finished late")
        let quiet = try await store.begin(intent())
        try await store.appendNote(quiet, "note")
        try await store.complete(quiet, completion(.success))
        #expect(try await store.operation(id: quiet)?.message == "note")
    }

    @Test("many concurrent writers share commits, and every row is there")
    func groupCommit() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
            for index in 0..<200 {
                group.addTask {
                    let id = try await store.begin(intent(domain: "d\(index)"))
                    #expect(try await store.complete(id, completion(.success)))
                    return id
                }
            }
            return try await group.reduce(into: Set<Int64>()) { $0.insert($1) }
        }
        #expect(ids.count == 200)
        let rows = try await store.query(AuditQuery(limit: 1000)).records
        #expect(rows.count == 200)
        #expect(rows.allSatisfy { $0.state == .finished && $0.result == .success })
    }

    @Test("record writes a row that is finished at once; appendNote adds to its message")
    func recordAndNote() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let id = try await store.record(
            intent(domain: "ghost"),
            AuditCompletion(
                result: .failure,
                powerState: nil,
                errorCode: "domain_not_found",
                message: "not found",
                finishedAt: Date()
            )
        )
        try await store.appendNote(id, "later remark")
        let row = try #require(try await store.operation(id: id))
        #expect(row.state == .finished)
        #expect(row.result == .failure)
        #expect(row.errorCode == "domain_not_found")
        #expect(row.message == "not found; later remark")
    }

    @Test("recovery marks rows of dead processes interrupted, and leaves live processes' rows alone")
    func recovery() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)

        let dead = try ChildProcess.sleeping()
        let deadIdentity = dead.identity
        dead.killAndWait()
        #expect(!deadIdentity.isAlive)
        let live = try ChildProcess.sleeping()
        defer { live.killAndWait() }

        let crashed = try await store.begin(intent(domain: "pcmk1"), owner: deadIdentity)
        let otherLive = try await store.begin(intent(domain: "pcmk2"), owner: live.identity)
        let mine = try await store.begin(intent(domain: "pcmk3"))
        let done = try await store.begin(intent(domain: "pcmk4"), owner: deadIdentity)
        try await store.complete(done, completion(.success))

        #expect(try await store.recoverInterrupted() == 1)
        let crashedRow = try #require(try await store.operation(id: crashed))
        #expect(crashedRow.state == .interrupted)
        #expect(crashedRow.result == .interrupted)
        #expect(crashedRow.message?.contains("ended before recording its result") == true)
        #expect(try await store.operation(id: otherLive)?.state == .started)
        #expect(try await store.operation(id: mine)?.state == .started)
        #expect(try await store.operation(id: done)?.result == .success)
        #expect(try await store.recoverInterrupted() == 0)
        // A completion that arrives after recovery does not overwrite "interrupted".
        #expect(try await store.complete(crashed, completion(.success)) == false)
    }

    @Test("a write that cannot take the lock fails with an error instead of hanging")
    func lockedDatabase() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(path: path, busyTimeout: .milliseconds(100), logger: logger)
        let holder = try Database(path: path)
        try holder.execute("BEGIN EXCLUSIVE")
        await #expect {
            _ = try await store.begin(intent())
        } throws: { error in
            guard case AuditStoreError.database(let sqlite) = error else { return false }
            return sqlite.isUnwritable
        }
        await #expect(throws: AuditStoreError.self) { try await store.checkWritable() }
        try holder.execute("ROLLBACK")
        _ = try await store.begin(intent())
        try await store.checkWritable()
    }
}

/// A real child process (`sleep`), to have process identities that are alive or really dead.
struct ChildProcess {
    let process: SpawnedProcess

    static func sleeping() throws -> ChildProcess {
        ChildProcess(
            process: try SpawnedProcess("/bin/sleep", ["60"], standardOutput: "/dev/null", standardError: "/dev/null")
        )
    }

    var identity: ProcessIdentity {
        let pid = process.processIdentifier
        return ProcessIdentity(pid: pid, startTicks: ProcessIdentity.startTicks(of: pid) ?? -1)
    }

    func killAndWait() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

@Suite("Audit store: the tokens' generation")
struct TokenGenerationTests {
    @Test("every create and revoke bumps the generation that another connection's reader sees, in its commit")
    func generationFollowsChanges() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("audit.db")
        let store = try await AuditStore.open(path: path, logger: logger)
        let reader = try store.tokenReader()
        let first = try #require(try reader.generation())
        #expect(try reader.tokens().tokens.isEmpty)

        let other = try await AuditStore.open(path: path, logger: logger)
        let record = TokenRecord(
            name: "ops",
            publicID: "0123456789abcdef",
            secretHash: "00",
            scope: "read",
            domainPatterns: [],
            createdAt: Date()
        )
        try await other.insertToken(record)
        let created = try #require(try reader.generation())
        #expect(created > first)
        let read = try reader.tokens()
        #expect(read.generation == created)
        #expect(read.tokens.map(\.name) == ["ops"] && read.tokens.first?.revokedAt == nil)

        #expect(try reader.generation() == created)  // nothing changed
        #expect(try await other.revokeToken(named: "ops"))
        let revoked = try #require(try reader.generation())
        #expect(revoked > created)
        #expect(try reader.tokens().tokens.first?.revokedAt != nil)
        // A revocation that changes nothing (already revoked) leaves it.
        #expect(try await !other.revokeToken(named: "ops"))
        #expect(try reader.generation() == revoked)
    }
}
