import ArgumentParser
import Cluster
import FenceCore
import FoundationEssentials
import Glibc
import Store
import UnixSignals

/// How `fencegate audit` prints.
enum AuditFormat: String, CaseIterable, ExpressibleByArgument {
    /// Aligned columns, one page.
    case table
    /// One page as `GET /operations` answers it (`--json`).
    case json
    /// Every page, one JSON object a line.
    case jsonLines = "json-lines"
    /// Every page, RFC 4180.
    case csv
    /// With `--follow` only: each operation as an entry of systemd's journal (its native protocol).
    case journal

    /// Prints every page (and may follow), rather than one.
    var isExport: Bool { self == .jsonLines || self == .csv || self == .journal }
}

/// Writes exported operations to stdout, a line (CSV: a CRLF-terminated record) at a time.
struct ExportWriter {
    let format: AuditFormat
    let withHost: Bool
    /// Flushes after every line: a log shipper reading a pipe sees each operation as it is printed.
    let flushEachLine: Bool
    /// Where `.journal` entries go.
    var journal: UnixDatagramSender?
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        // As GET /operations encodes it, keys sorted so every line reads alike; JSON escapes newlines and control
        // characters, so one object stays one line.
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return encoder
    }()

    init(format: AuditFormat, withHost: Bool = false, flushEachLine: Bool = false) {
        self.format = format
        self.withHost = withHost
        self.flushEachLine = flushEachLine
    }

    /// The CSV header; nothing for JSON lines.
    func begin() {
        if format == .csv { emit(OperationCSV.header(withHost: withHost)) }
    }

    func write(_ record: AuditRecord, host: String? = nil) throws {
        switch format {
        case .csv: emit(OperationCSV.row(record, host: host))
        case .journal:
            if let code = journal?.send(OperationJournal.entry(record)) {
                throw CLIFailure.other(
                    "cannot send operation \(record.id) to the journal: \(String(cString: strerror(code)))"
                )
            }
        default: emit(String(decoding: try encoder.encode(OperationJSON(record, host: host)), as: UTF8.self) + "\n")
        }
    }

    private func emit(_ line: String) {
        print(line, terminator: "")
        // fflush(nil) flushes every output stream (stdout among them) without naming the global `stdout`.
        if flushEachLine { fflush(nil) }
    }
}

extension Audit {
    /// Every matching operation in this host's log, oldest first, one page of the store at a time.
    func runExport(_ store: AuditStore, format: AuditFormat) async throws {
        let writer = ExportWriter(format: format)
        writer.begin()
        var query = filters
        query.order = .oldestFirst
        query.limit = AuditQuery.maximumLimit
        repeat {
            let page: AuditPage
            do {
                page = try await store.query(query)
            } catch {
                throw CLIFailure.auditUnavailable("\(error)")
            }
            for record in page.records { try writer.write(record) }
            query.cursor = page.nextCursor
        } while query.cursor != nil
    }

    /// `--follow`: the operations that ended already (unless `includingExisting` is false), then each one as it
    /// ends, until SIGINT or SIGTERM.
    func runFollowing(_ store: AuditStore, format: AuditFormat, includingExisting: Bool) async throws {
        let journal = format == .journal ? UnixDatagramSender(path: journalSocket) : nil
        if format == .journal && journal == nil {
            throw CLIFailure.other("cannot use the journal socket \(journalSocket)")
        }
        // Read-only without a -wal file, SQLite was told the file never changes (see AuditStore.open): a
        // follower would never see a row.
        if !store.seesLaterCommits {
            throw CLIFailure.other(
                "cannot follow \(store.path): it cannot be written here and has no -wal file (no fencegate serve "
                    + "is writing it), so it was opened as unchanging; follow it with write access, or while serve runs"
            )
        }
        let database = DatabaseFile(path: store.path)
        let changes: AuditLogChanges
        do {
            // Watching starts before the first read, so nothing committed meanwhile goes unsignalled.
            changes = try AuditLogChanges(databasePath: store.path)
        } catch {
            throw CLIFailure.other("cannot watch the audit database \(store.path) for changes: \(error)")
        }
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let query = filters
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var tail = try await AuditTail(store, query: query, includingExisting: includingExisting)
                // After the tail's first read: a reader that saw the CSV header knows later rows are new.
                var writer = ExportWriter(format: format, flushEachLine: true)
                writer.journal = journal
                writer.begin()
                var changeSignals = changes.signals.makeAsyncIterator()
                repeat {
                    // A database replaced under the follower (restored, removed and created again) would be
                    // read no more: the open connection keeps the old file.
                    guard database.isTheOneOpened else {
                        throw CLIFailure.other(
                            "the audit database \(store.path) was replaced or removed; start following it again"
                        )
                    }
                    var batch = try await tail.next(store)
                    while !batch.isEmpty {
                        for record in batch {
                            try Task.checkCancellation()  // SIGTERM or SIGINT during a long backlog
                            try writer.write(record)
                        }
                        batch = try await tail.next(store)
                    }
                } while await changeSignals.next() != nil
            }
            group.addTask {
                for await _ in signals { return }
            }
            do {
                try await group.next()
            } catch let failure as CLIFailure {
                group.cancelAll()
                throw failure
            } catch {
                group.cancelAll()
                throw CLIFailure.auditUnavailable("\(error)")
            }
            group.cancelAll()
        }
    }

    /// `--cluster` with an export format: every host's log, all pages, newest first, each row with its host.
    /// Hosts whose log could not be read are named on stderr, and the command then exits 1.
    func exportCluster(_ format: AuditFormat) async throws {
        try await reportingFailures {
            var query = filters
            query.limit = ClusterAuditPage.maximumLimit
            let wait = Duration.milliseconds(Int64(cluster.timeout * 1000))
            let unavailable = try await cluster.withMembership { [query] membership in
                let writer = ExportWriter(format: format, withHost: true)
                var unavailable: [String: String] = [:]
                var after: ClusterAuditCursor?
                writer.begin()
                repeat {
                    let page = await membership.auditPage(query, after: after, deadline: .now + wait)
                    for entry in page.entries { try writer.write(entry.record, host: entry.host) }
                    unavailable.merge(page.unavailableHosts) { first, _ in first }
                    after = page.nextCursor
                } while after != nil
                return unavailable
            }
            guard unavailable.isEmpty else {
                let hosts = unavailable.sorted { $0.key < $1.key }.map {
                    "host \($0.key.escapingControlCharacters): \($0.value.escapingControlCharacters)"
                }
                throw CLIFailure.other(
                    "the export lacks hosts whose log could not be read: " + hosts.joined(separator: "; ")
                )
            }
        }
    }
}

/// The file at a path, as it was when first looked at: whether the path still names that same file.
private struct DatabaseFile: Sendable {
    let path: String
    private let identity: (device: UInt64, inode: UInt64)?

    init(path: String) {
        self.path = path
        identity = Self.identity(path)
    }

    var isTheOneOpened: Bool {
        guard let identity, let now = Self.identity(path) else { return false }
        return identity == now
    }

    private static func identity(_ path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }
}
