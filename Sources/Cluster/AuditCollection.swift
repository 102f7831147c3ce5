import FenceCore
import Locking
import Store
import Synchronization

/// This member's merged audit queries: each waits for a page from every host the cluster had when the
/// query was delivered, and ends when all answered, when a host left (named unavailable), or at its deadline.
final class AuditCollection: Sendable {
    private struct Collection {
        let limit: Int
        /// The hosts expected to answer, once this member's own query was delivered.
        var expected: [CPGMember: String]?
        var pages: [String: [AuditRecord]] = [:]
        var unavailable: [String: String] = [:]

        var isComplete: Bool {
            guard let expected else { return false }
            return expected.values.allSatisfy { pages[$0] != nil || unavailable[$0] != nil }
        }
    }

    private let nextSerial = Atomic<UInt64>(UInt64.random(in: 1...(UInt64.max / 2)))
    private let collections = Locked<[UInt64: Collection]>([:])
    private let done = Rendezvous<UInt64, Bool>()

    /// The most merged queries this member waits for at once: each makes every host read its log and send
    /// up to a hundred rows to every member.
    static let concurrentLimit = 4

    /// A new query's serial; nil if `concurrentLimit` queries wait already.
    func register(limit: Int) -> UInt64? {
        let serial = nextSerial.add(1, ordering: .relaxed).oldValue
        let opened = collections.withLock { collections -> Bool in
            guard collections.count < Self.concurrentLimit else { return false }
            collections[serial] = Collection(limit: limit)
            return true
        }
        guard opened else { return nil }
        _ = done.open(serial)
        return serial
    }

    /// This member's query was delivered: these hosts are to answer; those that left cannot.
    func expect(_ serial: UInt64, from hosts: [(member: CPGMember, name: String)], departed: [String]) {
        update(serial) { collection in
            collection.expected = Dictionary(
                hosts.map { ($0.member, $0.name) },
                uniquingKeysWith: { first, _ in first }
            )
            for host in departed { collection.unavailable[host] = "it left the cluster" }
        }
    }

    /// A host's page (only from a host that is expected).
    func received(_ page: AuditPageMessage, from member: CPGMember) {
        update(page.serial) { collection in
            guard let name = collection.expected?[member] else { return }
            switch page.result {
            case .success(let records): collection.pages[name] = records
            case .failure(let failure): collection.unavailable[name] = failure.reason
            }
        }
    }

    /// Members left: the queries waiting for them name them unavailable.
    func left(_ members: Set<CPGMember>) {
        let serials = collections.withLock { Array($0.keys) }
        for serial in serials {
            update(serial) { collection in
                for member in members {
                    if let name = collection.expected?[member], collection.pages[name] == nil {
                        collection.unavailable[name] = "it left the cluster before answering"
                    }
                }
            }
        }
    }

    /// The merged page, once complete or at `deadline` (hosts that did not answer by then are unavailable).
    func wait(_ serial: UInt64, until deadline: ContinuousClock.Instant) async -> ClusterAuditPage {
        _ = await done.wait(serial, until: deadline)
        done.close(serial)
        let collection = collections.withLock { $0.removeValue(forKey: serial) }
        guard var collection else { return ClusterAuditPage(entries: [], nextCursor: nil, unavailableHosts: [:]) }
        for name in collection.expected?.values ?? [:].values where collection.pages[name] == nil {
            if collection.unavailable[name] == nil { collection.unavailable[name] = "it did not answer in time" }
        }
        if collection.expected == nil { collection.unavailable["*"] = "the query was not delivered in time" }
        return ClusterAuditPage.merge(
            collection.pages,
            limit: collection.limit,
            unavailableHosts: collection.unavailable
        )
    }

    private func update(_ serial: UInt64, _ change: (inout Collection) -> Void) {
        let complete = collections.withLock { collections -> Bool in
            guard var collection = collections[serial] else { return false }
            change(&collection)
            collections[serial] = collection
            return collection.isComplete
        }
        if complete { done.answer(serial, true) }
    }
}
