import ArgumentParser
import Cluster
import FenceCore
import Foundation
import Logging
import Store

/// `fencegate audit`: the audit log, newest first, filtered and paginated.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the audit log, newest first.",
        discussion: """
            Times for --since/--until: ISO 8601 (2026-11-25, 2026-11-25T10:00:00Z) or an age such as 30s, 15m, 2h, 7d. \
            When more rows match than --limit, the last line gives the --cursor for the next page. \
            In cluster mode, --cluster NAME (or --config FILE with a [cluster] table) reads every host's log \
            through this host's corosync, merged newest first with each row's host (at most 100 rows a page); \
            hosts whose log could not be read are named.
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
    @Option(help: "Rows per page, 1 to \(AuditQuery.maximumLimit).") var limit = AuditQuery.defaultLimit
    @Option(help: "Continue after a previous page (the value it printed).") var cursor: String?
    @Flag(help: "Print the page as JSON.") var json = false
    @OptionGroup var global: GlobalOptions
    @OptionGroup(title: "Cluster mode") var cluster: ClusterConnection

    func validate() throws {
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
        if cluster.isGiven { return try await runInCluster() }
        try await reportingFailures {
            let store = try await ServiceContext.openAuditLogForQueries(global, logger: logger)
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
    private var filters: AuditQuery {
        AuditQuery(
            domain: domain,
            action: action,
            source: source,
            result: result.flatMap(AuditResult.init(rawValue:)),
            requester: requester,
            since: since?.date,
            until: until?.date,
            limit: limit
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

    private static let header = [
        "ID", "REQUESTED", "SOURCE", "REQUESTER", "ACTION", "DOMAIN", "RESULT", "DURATION", "DETAIL",
    ]

    private static func row(_ record: AuditRecord) -> [String] {
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
