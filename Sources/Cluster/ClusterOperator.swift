import Locking
public import Logging
import Synchronization

/// Why an operator's command in the cluster could not be done.
public enum ClusterCommandError: Error, Sendable, CustomStringConvertible {
    /// Not joined, or the members did not all introduce themselves and report in time.
    case notSettled(String)
    /// This host's partition is not quorate (or its quorum is unknown): it may be the minority.
    case notQuorate
    /// The host named is a member now: it is not down.
    case isMember(String)
    /// The confirmation was not delivered in time.
    case notConfirmed(String)

    public var description: String {
        switch self {
        case .notSettled(let reason): "the cluster did not answer in time: \(reason)"
        case .notQuorate:
            "this host's partition is not quorate (or its quorum is unknown): it may be the minority, and a "
                + "confirmation from it could be wrong; confirm from a quorate host"
        case .isMember(let host): "host \(host) is a member of the cluster now: it is not down"
        case .notConfirmed(let host): "the confirmation that \(host) is down was not delivered in time"
        }
    }
}

/// An operator's command in the cluster (`fencegate cluster …`): joins the group as a member of role
/// `operator` (it reports no domains and executes nothing), which every host judges by its keys like any
/// member, and waits until every member has introduced itself and every host has reported its domains.
public enum ClusterOperator {
    /// Runs `body` with a membership that has settled (or throws `.notSettled` once `timeout` passed), then
    /// leaves the group.
    public static func withMembership<T: Sendable>(
        name: String,
        hello: Hello,
        timeout: Duration,
        logger: Logger,
        _ body: @Sendable (ClusterMembership) async throws -> T
    ) async throws -> T {
        let membership = ClusterMembership(configuration: .init(name: name, hello: hello), logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await membership.run() }
            defer { group.cancelAll() }
            try await membership.waitUntilSettled(until: .now + timeout)
            return try await body(membership)
        }
    }
}

extension ClusterMembership {
    /// Waits until joined, every member has introduced itself, every host has reported, and the quorum is
    /// known.
    func waitUntilSettled(until deadline: ContinuousClock.Instant) async throws(ClusterCommandError) {
        while true {
            let view = self.view
            let reason: String? =
                if view.local == nil {
                    "not joined (is corosync running here, and is the cluster name right?)"
                } else if let unsettled = view.ledger.unsettledReason {
                    unsettled
                } else if view.quorate == nil {
                    "the quorum is not known yet"
                } else {
                    nil
                }
            guard let reason else { return }
            guard ContinuousClock.now < deadline else { throw .notSettled(reason) }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Tells every member that `host`, which left the cluster, is down (an operator checked: powered off,
    /// or fenced by the host cluster). Refused in a partition that is not quorate, and for a member.
    public func confirmDown(
        _ host: String,
        by operatorName: String,
        timeout: Duration
    ) async throws(ClusterCommandError) {
        let view = self.view
        guard view.quorate == true else { throw .notQuorate }
        guard !view.ledger.hosts.contains(where: { $0.name == host }) else { throw .isMember(host) }
        guard let group = joined.withLock({ $0 }) else { throw .notSettled("not joined") }
        let deadline = ContinuousClock.now + timeout
        do {
            let message = ClusterMessage.confirmDown(DownConfirmation(hostName: host, confirmedBy: operatorName))
            try await group.send(message.encoded, deadline: deadline)
        } catch {
            throw .notConfirmed(host)
        }
        // Delivered to this member too, at the same point of the order as to the others.
        while !self.view.confirmedDown.contains(host) {
            if self.view.ledger.hosts.contains(where: { $0.name == host }) { throw .isMember(host) }
            guard ContinuousClock.now < deadline else { throw .notConfirmed(host) }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
