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
    /// This host's introduction as it is now (keys can change on reload).
    private let hello: Mutex<Hello>
    /// While joined: asks the hello sender to introduce this host again (the newest request is enough).
    private let introductions = Mutex<AsyncStream<Void>.Continuation?>(nil)

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        hello = Mutex(configuration.hello)
        var logger = logger
        logger[metadataKey: "cluster.name"] = "\(configuration.name)"
        self.logger = logger
    }

    /// The group now.
    public var view: View { current.withLock { $0 } }

    /// Takes this host's new introduction (its gateway keys were reloaded) and sends it to the members; they
    /// judge it again.
    public func update(_ newHello: Hello) {
        let changed = hello.withLock { current in
            defer { current = newHello }
            return current != newHello
        }
        if changed { introductions.withLock { $0 }?.yield() }
    }

    /// Joins, and rejoins after corosync goes away, until graceful shutdown or cancellation.
    public func run() async {
        var lastFailure: String?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let name = configuration.name
                let group = try await cancelWhenGracefulShutdown { try await CPGGroup.join(name: name) }
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
            } catch is CancellationError {
                break
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
        let (requests, introduce) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        introductions.withLock { $0 = introduce }
        let left = Flag()
        await withDiscardingTaskGroup { tasks in
            // Hellos go out beside the event loop: a send waiting on corosync's flow control delays no event.
            tasks.addTask { await self.sendHellos(requests, through: group, left: left) }
            introduce.yield()
            var warned: Set<CPGMember> = []
            for await event in group.events {
                switch event {
                case .membership(let members, let left, let joined):
                    changeMembership(members: members, left: left, joined: joined, local: group.local)
                    // Newcomers learn of the members already there by their hellos, sent again.
                    if joined.contains(where: { $0 != group.local }) { introduce.yield() }
                case .message(let from, let bytes):
                    guard from != group.local else { continue }
                    // A member whose standing changed (it joined, or its keys changed) may not know this
                    // host's standing either: introduce this host again. Standings settle, so this ends.
                    if receive(bytes, from: from, warned: &warned) { introduce.yield() }
                }
            }
            left.set()
            introductions.withLock { $0 = nil }
            introduce.finish()
            group.leave()
        }
    }

    /// Sends this host's hello each time one is asked for, until the group is left.
    private func sendHellos(_ requests: AsyncStream<Void>, through group: CPGGroup, left: Flag) async {
        for await _ in requests {
            let bytes = ClusterMessage.hello(hello.withLock { $0 }).encoded
            do {
                try await group.send(bytes, deadline: .now + .seconds(5))
            } catch {
                guard !left.isSet else { return }
                logger.error("could not send this host's hello", metadata: ["error": "\(error)"])
            }
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

    /// Judges a member's message; true if its standing changed.
    private func receive(_ bytes: [UInt8], from member: CPGMember, warned: inout Set<CPGMember>) -> Bool {
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
            // Once per member and membership: a member cannot flood the log.
            if warned.insert(member).inserted {
                logger.warning(
                    "dropped an unreadable message from a member (further ones are dropped silently)",
                    metadata: ["cluster.member": "\(member)", "error": "\(error)"]
                )
            }
            return false
        }
        let previous = current.withLock { view in
            defer { view.members[member] = standing }
            return view.members[member]
        }
        guard previous != standing else { return false }
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
        return true
    }

    private func judge(_ hello: Hello) -> Standing {
        let ours = self.hello.withLock { $0.keyFingerprints }
        guard Set(hello.keyFingerprints) == Set(ours) else {
            return .refused(
                reason: "host \(hello.hostName) holds other gateway keys "
                    + "(\(hello.keyFingerprints.joined(separator: ", ")); this host: \(ours.joined(separator: ", ")))"
            )
        }
        return .accepted(hello)
    }
}

/// A flag set once, read from other tasks.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)

    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
