import ArgumentParser
import Cluster
import FenceCore
import FoundationEssentials
import Logging
import Store

/// `fencegate audit`: the audit log, newest first, filtered and paginated.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the audit log, newest first, or export all of it for a SIEM.",
        discussion: """
            Times for --since/--until: ISO 8601 (2026-11-25, 2026-11-25T10:00:00Z) or an age such as 30s, 15m, 2h, 7d. \
            When more rows match than --limit, the last line gives the --cursor for the next page. \
            In cluster mode, --cluster NAME (or --config FILE with a [cluster] table) reads every host's log \
            through this host's corosync, merged newest first with each row's host (at most 100 rows a page); \
            hosts whose log could not be read are named.

            Export: --format json-lines (one JSON object a line, the fields of GET /operations' operations) or \
            --format csv (RFC 4180, a header row, CRLF; a text field beginning with = + - @ tab or CR gets a \
            leading ' so spreadsheets do not run it as a formula) prints every matching operation, all pages, \
            oldest first (by request time, then id; with --cluster: newest first, with a host column). \
            --json is --format json: one page, as GET /operations answers it.

            --follow (with json-lines, csv or journal) prints the matching operations that have ended, oldest first, \
            then each operation once, when it ends (finished or interrupted; never while started), as other \
            processes commit it, until SIGINT or SIGTERM (exit 0). --new-only skips those that ended before. \
            It waits on inotify (the database and its -wal file), re-checking every 5 s in case an event was \
            missed; each line is flushed as it is printed. --follow --format journal sends each operation to \
            journald instead (native protocol, fields FENCEGATE_ID, FENCEGATE_ACTION…; --journal-socket).
            """
    )

    @Option(help: "Only this domain (name or UUID).") var domain: String?
    @Option(help: "Only this action: off, on, reboot, status, shutdown, graceful-reboot, nmi, list, monitor.")
    var action: String?
    @Option(help: "Only this front end: cli, http, multicast, tcp, redfish.") var source: String?
    @Option(help: "Only this result: success, failure, timed_out, refused, interrupted.") var result: String?
    @Option(help: "Only this requester (token name, user, guest address).") var requester: String?
    @Option(help: "Only operations requested at or after this time.") var since: TimeArgument?
    @Option(help: "Only operations requested before this time.") var until: TimeArgument?
    @Option(
        help: "Rows per page, 1 to \(AuditQuery.maximumLimit) (default \(AuditQuery.defaultLimit)); not for an export."
    )
    var limit: Int?
    @Option(help: "Continue after a previous page (the value it printed); not for an export.") var cursor: String?
    @Flag(help: "Print the page as JSON (the same as --format json).") var json = false
    @Option(help: "table, json (one page), json-lines or csv (every page: an export), journal (with --follow).")
    var format: AuditFormat?
    @Flag(help: "With json-lines, csv or journal: then each operation as it ends, until interrupted.") var follow =
        false
    @Flag(help: "With --follow: only operations that end from now on.") var newOnly = false
    @Option(help: "With --format journal: journald's socket.") var journalSocket = "/run/systemd/journal/socket"
    @OptionGroup var global: GlobalOptions
    @OptionGroup(title: "Cluster mode") var cluster: ClusterConnection

    /// The format asked for: `--format`, or `--json`, or the table.
    private var resolvedFormat: AuditFormat { format ?? (json ? .json : .table) }

    func validate() throws {
        if json, let format, format != .json {
            throw ValidationError("--json is --format json; give one of them")
        }
        if resolvedFormat.isExport {
            if limit != nil || cursor != nil {
                throw ValidationError("--format \(resolvedFormat.rawValue) prints every page: narrow it with filters")
            }
        } else if follow {
            throw ValidationError("--follow needs --format json-lines or --format csv")
        }
        if newOnly && !follow { throw ValidationError("--new-only is an option of --follow") }
        if resolvedFormat == .journal && !follow { throw ValidationError("--format journal needs --follow") }
        if follow && cluster.isGiven { throw ValidationError("--follow reads this host's log only, not --cluster") }
        let limit = limit ?? AuditQuery.defaultLimit
        guard (1...AuditQuery.maximumLimit).contains(limit) else {
            throw ValidationError("--limit must be 1 to \(AuditQuery.maximumLimit)")
        }
        if let result, AuditResult(rawValue: result) == nil {
            throw ValidationError(
                "--result must be one of: \(AuditResult.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        if cluster.isGiven {
            if let cursor, ClusterAuditCursor(encoded: cursor) == nil {
                throw ValidationError("--cursor is not a cursor printed by fencegate audit --cluster")
            }
            guard limit <= ClusterAuditPage.maximumLimit else {
                throw ValidationError("with --cluster, --limit is at most \(ClusterAuditPage.maximumLimit)")
            }
        } else if let cursor, (try? AuditCursor(encoded: cursor)) == nil {
            throw ValidationError("--cursor is not a cursor printed by fencegate audit")
        }
    }

    func run() async throws {
        let logger = global.makeLogger(defaultLevel: .warning)
        if cluster.isGiven {
            return try await resolvedFormat.isExport ? exportCluster(resolvedFormat) : runInCluster()
        }
        try await reportingFailures {
            let store = try await ServiceContext.openAuditLogForQueries(global, logger: logger)
            if resolvedFormat.isExport {
                return try await follow
                    ? runFollowing(store, format: resolvedFormat, includingExisting: !newOnly)
                    : runExport(store, format: resolvedFormat)
            }
            var query = filters
            query.cursor = try cursor.map(AuditCursor.init(encoded:))
            let page: AuditPage
            do {
                page = try await store.query(query)
            } catch {
                throw CLIFailure.auditUnavailable("\(error)")
            }
            if json {
                print(try JSONText.encode(OperationPageJSON(page)))
                return
            }
            print(Table.render(header: Self.header, rows: page.records.map(Self.row)))
            if let next = page.nextCursor {
                print("-- more: fencegate audit --cursor \(next) (same filters)")
            }
        }
    }

    /// The filters and the page size given.
    var filters: AuditQuery {
        AuditQuery(
            domain: domain,
            action: action,
            source: source,
            result: result.flatMap(AuditResult.init(rawValue:)),
            requester: requester,
            since: since?.date,
            until: until?.date,
            limit: limit ?? AuditQuery.defaultLimit
        )
    }

    /// `--cluster`: every host's log, merged.
    private func runInCluster() async throws {
        try await reportingFailures {
            let query = filters
            let after = cursor.flatMap(ClusterAuditCursor.init(encoded:))
            let wait = Duration.milliseconds(Int64(cluster.timeout * 1000))
            let page = try await cluster.withMembership { membership in
                await membership.auditPage(query, after: after, deadline: .now + wait)
            }
            if json {
                print(try JSONText.encode(ClusterOperationPageJSON(page)))
                return
            }
            print(
                Table.render(
                    header: ["HOST"] + Self.header,
                    rows: page.entries.map { [$0.host] + Self.row($0.record) }
                )
            )
            for (host, reason) in page.unavailableHosts.sorted(by: { $0.key < $1.key }) {
                print("-- not read: host \(host.escapingControlCharacters): \(reason.escapingControlCharacters)")
            }
            if let next = page.nextCursor {
                print("-- more: fencegate audit --cluster … --cursor \(next) (same filters)")
            }
        }
    }

    static let header = [
        "ID", "REQUESTED", "SOURCE", "REQUESTER", "ACTION", "DOMAIN", "RESULT", "DURATION", "DETAIL",
    ]

    static func row(_ record: AuditRecord) -> [String] {
        [
            String(record.id),
            RFC3339.format(record.requestedAt),
            record.source,
            [record.requester, record.clientAddress.map { "@\($0)" }].compactMap { $0 }.joined(separator: " "),
            record.action,
            record.domainName ?? record.target,
            record.result?.rawValue ?? record.state.rawValue,
            record.duration.map(formatDuration) ?? "-",
            [record.powerState.map { "power \($0)" }, record.message].compactMap { $0 }.joined(separator: "; "),
        ]
    }
}

/// A point in time given on the command line: ISO 8601, or an age like "15m" meaning that long ago.
struct TimeArgument: ExpressibleByArgument {
    let date: Date

    init?(argument: String) {
        if let date = Self.parseAge(argument) ?? Self.parseISO(argument) {
            self.date = date
        } else {
            return nil
        }
    }

    private static func parseAge(_ text: String) -> Date? {
        guard let unit = text.last, let value = Double(text.dropLast()), value >= 0 else { return nil }
        let seconds: Double
        switch unit {
        case "s": seconds = value
        case "m": seconds = value * 60
        case "h": seconds = value * 3600
        case "d": seconds = value * 86400
        default: return nil
        }
        return Date(timeIntervalSinceNow: -seconds)
    }

    private static func parseISO(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            return date
        }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle().year().month().day())
    }
}
