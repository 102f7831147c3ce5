import ArgumentParser
import FenceCore
import FoundationEssentials
import Glibc
import Logging
import Store

/// Benchmark tools run by bench/run; not installed with fencegate.
@main
struct FencegateBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fencegate-bench",
        abstract: "Benchmark helpers for bench/run (not part of the product).",
        subcommands: [AuditScale.self, XVMLoad.self, ClusterHello.self]
    )
}

/// Fills an audit database with generated rows, then times the filtered, paginated queries the API offers.
struct AuditScale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Insert N audit rows, then time filtered page queries; prints JSON."
    )

    @Option(help: "Rows to insert.") var rows = 1_000_000
    @Option(help: "Queries per kind.") var queries = 200
    @Option(help: "Database path (created; must not exist).") var database: String

    func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let store = try await AuditStore.open(path: database, logger: logger)
        let domains = (1...200).map { "node\($0)" }
        let actions = ["off", "on", "reboot", "status", "list", "monitor"]
        let sources = ["http", "multicast", "cli", "tcp"]
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let insertClock = ContinuousClock()
        let insertStarted = insertClock.now
        var generator = SystemRandomNumberGenerator()
        let batch = 20_000
        var inserted = 0
        while inserted < rows {
            var chunk: [(AuditIntent, AuditCompletion)] = []
            chunk.reserveCapacity(batch)
            for index in inserted..<min(rows, inserted + batch) {
                let domain = domains[Int.random(in: 0..<domains.count, using: &generator)]
                let requested = start.addingTimeInterval(Double(index) * 0.25)
                let failed = Int.random(in: 0..<50, using: &generator) == 0
                let intent = AuditIntent(
                    source: sources[index % sources.count],
                    requester: "token-\(index % 7)",
                    clientAddress: "198.18.0.\(index % 250)",
                    target: domain,
                    domainName: domain,
                    domainUUID: nil,
                    action: actions[Int.random(in: 0..<actions.count, using: &generator)],
                    requestedAt: requested
                )
                let completion = AuditCompletion(
                    result: failed ? .failure : .success,
                    powerState: failed ? nil : "off",
                    errorCode: failed ? "operation_failed" : nil,
                    message: nil,
                    finishedAt: requested.addingTimeInterval(0.003)
                )
                chunk.append((intent, completion))
            }
            try await store.insertFinished(chunk)
            inserted += chunk.count
        }
        let insertSeconds = (insertClock.now - insertStarted).seconds
        let end = start.addingTimeInterval(Double(rows) * 0.25)

        var results: [String: BenchJSON] = [
            "rows": .integer(rows), "insert_seconds": .number(insertSeconds),
            "insert_rows_per_second": .number(Double(rows) / insertSeconds),
        ]
        func measure(_ name: String, _ makeQuery: (Int) -> AuditQuery) async throws {
            var firstPage: [Double] = []
            var deepPage: [Double] = []
            for index in 0..<queries {
                let query = makeQuery(index)
                let clock = ContinuousClock()
                var began = clock.now
                let page = try await store.query(query)
                firstPage.append((clock.now - began).seconds * 1000)
                // Walk nine more pages with the cursor: a deep page costs the same as the first.
                var cursor = page.nextCursor
                for _ in 0..<9 {
                    guard let current = cursor else { break }
                    var next = query
                    next.cursor = current
                    began = clock.now
                    cursor = try await store.query(next).nextCursor
                    deepPage.append((clock.now - began).seconds * 1000)
                }
            }
            results[name] = .object([
                "first_page_ms": .object([
                    "p50": .number(percentile(firstPage, 0.5)), "p99": .number(percentile(firstPage, 0.99)),
                ]),
                "next_pages_ms": .object([
                    "p50": .number(percentile(deepPage, 0.5)), "p99": .number(percentile(deepPage, 0.99)),
                ]),
            ])
        }
        try await measure("by_domain") { AuditQuery(domain: domains[$0 % domains.count], limit: 50) }
        try await measure("by_time_range") { index in
            let from = start.addingTimeInterval(Double(index % 100) * Double(rows) * 0.0025)
            return AuditQuery(since: from, until: from.addingTimeInterval(3600), limit: 50)
        }
        try await measure("by_result") { _ in AuditQuery(result: .failure, limit: 50) }
        try await measure("by_domain_and_action") {
            AuditQuery(domain: domains[$0 % domains.count], action: "reboot", limit: 50)
        }
        try await measure("unfiltered") { _ in AuditQuery(until: end, limit: 50) }
        var info = stat()
        results["database_bytes"] = .integer(stat(database, &info) == 0 ? Int(info.st_size) : 0)
        print(try BenchJSON.object(results).text(pretty: true))
    }
}

func percentile(_ values: [Double], _ fraction: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)]
}
