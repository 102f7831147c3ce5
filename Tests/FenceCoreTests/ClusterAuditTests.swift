import FenceCore
import Foundation
import Store
import Testing

/// The cluster's merged audit log: each host reads its own log after a host-aware cursor; the pages merge
/// newest first (time, then host, then id), and walking the pages yields every row once, in order.
@Suite("Cluster mode: the merged audit log's cursor and pages")
struct ClusterAuditTests {
    static func record(_ id: Int64, at microseconds: Int64) -> AuditRecord {
        AuditRecord(
            id: id,
            intent: AuditIntent(
                source: "http",
                requester: "ops",
                clientAddress: nil,
                target: "d",
                domainName: "d",
                domainUUID: nil,
                action: "off",
                requestedAt: Date(microsecondsSince1970: microseconds)
            ),
            state: .finished,
            result: .success,
            powerState: "off",
            errorCode: nil,
            message: nil,
            finishedAt: nil,
            duration: nil
        )
    }

    /// A row's place in its host's log.
    static func key(_ record: AuditRecord) -> (Int64, Int64) { (record.requestedAt.microsecondsSince1970, record.id) }

    /// A host cursor's place (its text is `MICROSECONDS-ID`).
    static func key(_ cursor: AuditCursor) -> (Int64, Int64) {
        let parts = cursor.description.split(separator: "-").map { Int64($0)! }
        return (parts[0], parts[1])
    }

    @Test("a cursor round-trips, host names of any bytes included; anything else is refused")
    func cursorText() {
        let cursor = ClusterAuditCursor(requestedAtMicroseconds: 1_795_583_769_135_103, host: "hôte-2", id: 42)
        #expect(ClusterAuditCursor(encoded: cursor.description) == cursor)
        #expect(cursor.description.hasPrefix("C-1795583769135103-42-"))
        for invalid in ["", "1795583769135103-42", "C-1-2", "C-1-2-zz", "C-1-2-a", "C-x-2-61"] {
            #expect(ClusterAuditCursor(encoded: invalid) == nil, "\(invalid)")
        }
    }

    @Test("walking the pages yields every host's rows once, newest first, ties broken by host then id")
    func paging() {
        // Three hosts whose rows share some request times.
        let logs: [String: [AuditRecord]] = [
            "host1": [
                Self.record(1, at: 100), Self.record(2, at: 200), Self.record(3, at: 200), Self.record(4, at: 400),
            ],
            "host2": [Self.record(1, at: 200), Self.record(2, at: 300), Self.record(3, at: 500)],
            "host3": [Self.record(1, at: 50), Self.record(2, at: 200)],
        ]
        let expected = logs.flatMap { host, rows in rows.map { (host, $0) } }
            .sorted {
                ($0.1.requestedAt.microsecondsSince1970, $0.0, $0.1.id) > (
                    $1.1.requestedAt.microsecondsSince1970, $1.0, $1.1.id
                )
            }
            .map { "\($0.0)#\($0.1.id)" }
        for limit in 1...4 {
            var seen: [String] = []
            var cursor: ClusterAuditCursor?
            var pages = 0
            repeat {
                // Each host answers as its store would: its rows after its cursor, newest first, at most limit.
                var perHost: [String: [AuditRecord]] = [:]
                for (host, rows) in logs {
                    let position = cursor.map { Self.key($0.cursor(forHost: host)) }
                    perHost[host] = Array(
                        rows.filter { position == nil || Self.key($0) < position! }.sorted {
                            Self.key($0) > Self.key($1)
                        }
                        .prefix(limit)
                    )
                }
                let page = ClusterAuditPage.merge(perHost, limit: limit, unavailableHosts: [:])
                seen += page.entries.map { "\($0.host)#\($0.record.id)" }
                cursor = page.nextCursor
                pages += 1
            } while cursor != nil && pages < 100
            #expect(seen == expected, "limit \(limit)")
        }
    }
}
