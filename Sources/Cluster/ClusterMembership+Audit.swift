public import FenceCore
import Locking
public import Store
import Synchronization

/// Cluster mode's merged audit log: a member asks through the group; every host answers from its own log.
extension ClusterMembership {
    /// The most merged audit queries this host reads its log for at once; further ones get a "busy" page.
    static let concurrentAuditAnswers = 8

    public func auditPage(
        _ query: AuditQuery,
        after cursor: ClusterAuditCursor?,
        deadline: ContinuousClock.Instant
    ) async -> ClusterAuditPage {
        guard let group = joined.withLock({ $0 }) else {
            return ClusterAuditPage(
                entries: [],
                nextCursor: nil,
                unavailableHosts: ["*": "this host is not in the cluster (corosync unreachable)"]
            )
        }
        guard let serial = audits.register(limit: min(query.limit, ClusterAuditPage.maximumLimit)) else {
            return ClusterAuditPage(
                entries: [],
                nextCursor: nil,
                unavailableHosts: ["*": "too many merged audit queries are under way on this host; retry shortly"]
            )
        }
        let message = AuditQueryMessage(serial: serial, query: query, cursor: cursor)
        do {
            try await group.send(ClusterMessage.auditQuery(message).encoded, deadline: deadline)
        } catch {
            return ClusterAuditPage(
                entries: [],
                nextCursor: nil,
                unavailableHosts: ["*": "the query could not be sent to the cluster (\(error))"]
            )
        }
        return await audits.wait(serial, until: deadline)
    }

    /// A merged audit query delivered: this member's own names the hosts that are to answer; a host answers
    /// a trusted member's from its own log.
    func receive(_ query: AuditQueryMessage, from member: CPGMember, isLocal: Bool) {
        let (hosts, departed, trusted) = current.withLock {
            ($0.ledger.hosts, $0.ledger.departed.keys.sorted(), $0.ledger.isTrusted(member))
        }
        if isLocal { audits.expect(query.serial, from: hosts, departed: departed) }
        guard trusted, let service, let group = joined.withLock({ $0 }) else { return }
        let hostName = hello.withLock { $0.hostName }
        // A member asking faster than this host reads its log gets "busy" pages, not a queue.
        let admitted = answering.add(1, ordering: .relaxed).newValue <= Self.concurrentAuditAnswers
        followUps.withLock {
            $0.append {
                defer { self.answering.subtract(1, ordering: .relaxed) }
                var local = query.query
                local.cursor = query.cursor?.cursor(forHost: hostName)
                let result: Result<[AuditRecord], AuditPageMessage.AuditReadFailure>
                if !admitted {
                    result = .failure(.init(reason: "it is answering too many merged audit queries; retry shortly"))
                } else {
                    do {
                        result = .success(try await service.operationsForCluster(local).records)
                    } catch {
                        result = .failure(AuditPageMessage.AuditReadFailure(reason: "\(error)"))
                    }
                }
                let page = AuditPageMessage(receiver: member, serial: query.serial, hostName: hostName, result: result)
                try? await group.send(ClusterMessage.auditPage(page).encoded, deadline: .now + .seconds(5))
            }
        }
    }
}
