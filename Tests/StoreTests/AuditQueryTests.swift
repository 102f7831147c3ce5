import Foundation
import Logging
import TestSupport
import Testing

@testable import Store

private let logger = Logger(label: "test")

/// A store filled with a known set of rows: 3 domains × 4 actions × 2 sources, one second apart.
private func populatedStore(_ directory: TemporaryDirectory) async throws -> (AuditStore, [AuditRecord], Date) {
    let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
    let base = Date(timeIntervalSince1970: 1_800_000_000)
    var index = 0
    for domain in ["pcmk1", "pcmk2", "pcmk3"] {
        for action in ["off", "on", "reboot", "status"] {
            for source in ["cli", "http"] {
                let intent = AuditIntent(
                    source: source,
                    requester: source == "cli" ? "root" : "token-ops",
                    clientAddress: nil,
                    target: domain,
                    domainName: domain,
                    domainUUID: "00000000-0000-4000-8000-00000000000\(domain.last!)",
                    action: action,
                    requestedAt: base.addingTimeInterval(Double(index))
                )
                let id = try await store.begin(intent)
                let result: AuditResult = index % 3 == 0 ? .failure : .success
                try await store.complete(
                    id,
                    AuditCompletion(
                        result: result,
                        powerState: nil,
                        errorCode: nil,
                        message: nil,
                        finishedAt: intent.requestedAt.addingTimeInterval(0.5)
                    )
                )
                index += 1
            }
        }
    }
    let all = try await store.query(AuditQuery(limit: 1000)).records
    return (store, all, base)
}

@Suite("Audit store: queries and pagination")
struct AuditQueryTests {
    @Test("without filters, every row comes back newest first")
    func newestFirst() async throws {
        let directory = try TemporaryDirectory()
        let (_, all, _) = try await populatedStore(directory)
        #expect(all.count == 24)
        #expect(all.map(\.requestedAt) == all.map(\.requestedAt).sorted(by: >))
    }

    @Test(
        "each filter returns exactly the matching rows",
        arguments: [
            ("domain", AuditQuery(domain: "pcmk2", limit: 1000), 8),
            ("domain by UUID", AuditQuery(domain: "00000000-0000-4000-8000-000000000003", limit: 1000), 8),
            (
                "domain by upper-case UUID",
                AuditQuery(domain: "00000000-0000-4000-8000-000000000003".uppercased(), limit: 1000), 8
            ),
            ("action", AuditQuery(action: "reboot", limit: 1000), 6),
            ("source", AuditQuery(source: "http", limit: 1000), 12),
            ("result", AuditQuery(result: .failure, limit: 1000), 8),
            ("requester", AuditQuery(requester: "token-ops", limit: 1000), 12),
            ("combined", AuditQuery(domain: "pcmk1", action: "off", source: "cli", limit: 1000), 1),
            ("no match", AuditQuery(domain: "nobody", limit: 1000), 0),
        ]
    )
    func filters(name: String, query: AuditQuery, expected: Int) async throws {
        let directory = try TemporaryDirectory()
        let (store, all, _) = try await populatedStore(directory)
        let page = try await store.query(query)
        #expect(page.records.count == expected, "\(name)")
        #expect(page.nextCursor == nil)
        let matching = all.filter { record in
            (query.domain == nil || record.domainName == query.domain
                || record.domainUUID == query.domain?.lowercased())
                && (query.action == nil || record.action == query.action)
                && (query.source == nil || record.source == query.source)
                && (query.result == nil || record.result == query.result)
                && (query.requester == nil || record.requester == query.requester)
        }
        #expect(page.records == matching, "\(name)")
    }

    @Test("a filter value holding a NUL is compared whole, never cut at the NUL")
    func embeddedNUL() async throws {
        let directory = try TemporaryDirectory()
        let (store, _, _) = try await populatedStore(directory)
        #expect(try await store.query(AuditQuery(requester: "root\u{0}", limit: 1000)).records.isEmpty)
        #expect(try await store.query(AuditQuery(domain: "pcmk1\u{0}x", limit: 1000)).records.isEmpty)
        #expect(try await store.query(AuditQuery(requester: "root", limit: 1000)).records.count == 12)
    }

    @Test("a time range includes since and excludes until")
    func timeRange() async throws {
        let directory = try TemporaryDirectory()
        let (store, _, base) = try await populatedStore(directory)
        let page = try await store.query(
            AuditQuery(since: base.addingTimeInterval(5), until: base.addingTimeInterval(10), limit: 1000)
        )
        #expect(page.records.count == 5)
        #expect(page.records.first?.requestedAt == base.addingTimeInterval(9))
        #expect(page.records.last?.requestedAt == base.addingTimeInterval(5))
    }

    @Test("pages of any size walk every matching row exactly once, in order", arguments: [1, 3, 7, 24, 25])
    func pagination(limit: Int) async throws {
        let directory = try TemporaryDirectory()
        let (store, all, _) = try await populatedStore(directory)
        for query in [AuditQuery(limit: limit), AuditQuery(source: "cli", limit: limit)] {
            var seen: [AuditRecord] = []
            var cursor: AuditCursor?
            repeat {
                var pageQuery = query
                pageQuery.cursor = cursor
                let page = try await store.query(pageQuery)
                #expect(page.records.count <= limit)
                seen += page.records
                cursor = try page.nextCursor.map { try AuditCursor(encoded: $0.description) }
            } while cursor != nil
            #expect(seen == all.filter { query.source == nil || $0.source == query.source })
        }
    }

    @Test("rows with the same request time are paged by id without loss")
    func sameTimestamp() async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let moment = Date(timeIntervalSince1970: 1_800_000_000)
        for index in 0..<10 {
            _ = try await store.begin(
                AuditIntent(
                    source: "cli",
                    requester: nil,
                    clientAddress: nil,
                    target: "d\(index)",
                    domainName: nil,
                    domainUUID: nil,
                    action: "off",
                    requestedAt: moment
                )
            )
        }
        var ids: [Int64] = []
        var cursor: AuditCursor?
        repeat {
            let page = try await store.query(AuditQuery(limit: 3, cursor: cursor))
            ids += page.records.map(\.id)
            cursor = page.nextCursor
        } while cursor != nil
        #expect(ids == Array((1...10).reversed()))
    }

    @Test(
        "bad cursors and limits are rejected",
        arguments: [
            "", "garbage", "12", "12-", "-12", "1-2-3", "1.5-2", "+1-2", "١٢-٣", "1234567890123456789-1",
            String(repeating: "1", count: 100),
        ]
    )
    func invalidCursor(text: String) async throws {
        #expect(throws: AuditStoreError.self) { try AuditCursor(encoded: text) }
    }

    @Test("limits outside 1…1000 are rejected", arguments: [0, -1, 1001])
    func invalidLimit(limit: Int) async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        await #expect(throws: AuditStoreError.self) { try await store.query(AuditQuery(limit: limit)) }
    }

    @Test(
        "every filter is served by an index, with no sort step",
        arguments: [
            AuditQuery(),
            AuditQuery(domain: "pcmk1"),
            AuditQuery(domain: "00000000-0000-4000-8000-000000000001"),
            AuditQuery(action: "off"),
            AuditQuery(source: "http"),
            AuditQuery(result: .failure),
            AuditQuery(requester: "root"),
            AuditQuery(since: Date(), until: Date()),
            AuditQuery(domain: "pcmk1", cursor: AuditCursor(requestedAtMicroseconds: 5, id: 5)),
            AuditQuery(domain: "pcmk1", action: "reboot"),
        ]
    )
    func indexesServeQueries(query: AuditQuery) async throws {
        let directory = try TemporaryDirectory()
        let store = try await AuditStore.open(path: directory.file("audit.db"), logger: logger)
        let plan = try await store.queryPlan(query)
        #expect(plan.contains("USING INDEX operations_by_"), "\(plan)")
        #expect(!plan.contains("TEMP B-TREE"), "\(plan)")
        #expect(!plan.contains("SCAN operations\n") && !plan.hasSuffix("SCAN operations"), "\(plan)")
        if query.domain != nil && query.action != nil {
            #expect(plan.contains("operations_by_domain_action"), "\(plan)")
        }
    }
}
