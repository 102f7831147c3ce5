import FenceCore
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// Membership of the Fencegate cluster: joins the CPG group through the local corosync, introduces itself
/// (`Hello`: protocol version, key fingerprints), and accepts a member only if it speaks this protocol
/// version and holds the same keys; a refused member is logged on both sides, with the reason. Rejoins by
/// itself when corosync goes away and comes back. A lifecycle service.
public final class ClusterMembership: Service, Sendable {
    public struct Configuration: Sendable {
        /// The CPG group's name (1 to 128 bytes).
        public var name: String
        /// This host's introduction.
        public var hello: Hello
        /// Between attempts to join while corosync is unreachable.
        public var rejoinDelay: Duration = .seconds(1)

        public init(name: String, hello: Hello) {
            self.name = name
            self.hello = hello
        }
    }

    /// What this host thinks of another member.
    public enum Standing: Sendable, Equatable {
        /// Joined; its hello has not arrived yet.
        case pending
        case accepted(Hello)
        case refused(reason: String)
    }

    /// The group as this host sees it.
    public struct View: Sendable, Equatable {
        /// This process, while joined.
        public var local: CPGMember?
        /// The other members and their standing.
        public var members: [CPGMember: Standing] = [:]

        /// The accepted members, sorted.
        public var accepted: [CPGMember] {
            members.filter { if case .accepted = $0.value { true } else { false } }.keys.sorted()
        }
    }

    public let configuration: Configuration
    private let logger: Logger
    private let current = Mutex(View())

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "cluster.name"] = "\(configuration.name)"
        self.logger = logger
    }

    /// The group now.
    public var view: View { current.withLock { $0 } }

    /// Joins, and rejoins after corosync goes away, until graceful shutdown or cancellation.
    public func run() async {
        var lastFailure: String?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let group = try CPGGroup(name: configuration.name)
                lastFailure = nil
                current.withLock { $0 = View(local: group.local) }
                logger.notice("joined the cluster", metadata: ["cluster.member": "\(group.local)"])
                await withGracefulShutdownHandler {
                    await serve(group)
                } onGracefulShutdown: {
                    group.leave()
                }
                current.withLock { $0 = View() }
                if !Task.isShuttingDownGracefully && !Task.isCancelled {
                    logger.error("left the cluster: corosync went away; rejoining")
                }
            } catch {
                // Logged once per cause, not once a second.
                if lastFailure != "\(error)" {
                    logger.error("cannot join the cluster; retrying", metadata: ["error": "\(error)"])
                    lastFailure = "\(error)"
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.configuration.rejoinDelay) }
        }
    }

    private func serve(_ group: CPGGroup) async {
        let hello = ClusterMessage.hello(configuration.hello).encoded
        await introduce(hello, through: group)
        for await event in group.events {
            switch event {
            case .membership(let members, let left, let joined):
                changeMembership(members: members, left: left, joined: joined, local: group.local)
                // Newcomers learn of the members already there by their hellos, sent again.
                if joined.contains(where: { $0 != group.local }) { await introduce(hello, through: group) }
            case .message(let from, let bytes):
                guard from != group.local else { continue }
                receive(bytes, from: from)
            }
        }
    }

    private func introduce(_ hello: [UInt8], through group: CPGGroup) async {
        do {
            try await group.send(hello, deadline: .now + .seconds(5))
        } catch {
            logger.error("could not send this host's hello", metadata: ["error": "\(error)"])
        }
    }

    private func changeMembership(
        members: [CPGMember],
        left: [(CPGMember, CPGEvent.LeaveReason)],
        joined: [CPGMember],
        local: CPGMember
    ) {
        current.withLock { view in
            for (member, _) in left { view.members[member] = nil }
            for member in members where member != local && view.members[member] == nil {
                view.members[member] = .pending
            }
        }
        for (member, reason) in left {
            logger.notice("member left", metadata: ["cluster.member": "\(member)", "cluster.reason": "\(reason)"])
        }
    }

    private func receive(_ bytes: [UInt8], from member: CPGMember) {
        let standing: Standing
        do {
            switch try ClusterMessage(decoding: bytes) {
            case .hello(let hello): standing = judge(hello)
            }
        } catch .unsupportedVersion(let version) {
            standing = .refused(
                reason: "it speaks cluster protocol \(version), this host \(ClusterMessage.protocolVersion)"
            )
        } catch {
            logger.warning(
                "dropped an unreadable message from a member",
                metadata: ["cluster.member": "\(member)", "error": "\(error)"]
            )
            return
        }
        let previous = current.withLock { view in
            defer { view.members[member] = standing }
            return view.members[member]
        }
        guard previous != standing else { return }
        switch standing {
        case .accepted(let hello):
            logger.notice(
                "member accepted",
                metadata: ["cluster.member": "\(member)", "cluster.host": "\(hello.hostName)"]
            )
        case .refused(let reason):
            logger.error("member refused", metadata: ["cluster.member": "\(member)", "cluster.reason": "\(reason)"])
        case .pending:
            break
        }
    }

    private func judge(_ hello: Hello) -> Standing {
        let ours = configuration.hello.keyFingerprints
        guard hello.keyFingerprints == ours else {
            return .refused(
                reason: "host \(hello.hostName) holds other gateway keys "
                    + "(\(hello.keyFingerprints.joined(separator: ", ")); this host: \(ours.joined(separator: ", ")))"
            )
        }
        return .accepted(hello)
    }
}
