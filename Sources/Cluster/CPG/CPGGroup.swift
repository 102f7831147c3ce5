internal import CCorosync
import FenceCore
import FoundationEssentials
import Glibc
import Synchronization

/// A process in a CPG group: its corosync node and process id.
public struct CPGMember: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let nodeID: UInt32
    public let pid: UInt32

    public init(nodeID: UInt32, pid: UInt32) {
        self.nodeID = nodeID
        self.pid = pid
    }

    public var description: String { "node \(nodeID) (pid \(pid))" }

    public static func < (left: CPGMember, right: CPGMember) -> Bool {
        (left.nodeID, left.pid) < (right.nodeID, right.pid)
    }
}

/// What a CPG group delivers, in corosync's total order: every member sees the same sequence.
public enum CPGEvent: Sendable {
    /// A message multicast to the group (the member's own included).
    case message(from: CPGMember, bytes: [UInt8])
    /// The group's members changed: all of them now, who left (with corosync's reason) and who joined.
    case membership(members: [CPGMember], left: [(CPGMember, LeaveReason)], joined: [CPGMember])

    /// Why a member left (corosync's `cpg_reason_t`).
    public enum LeaveReason: UInt32, Sendable {
        case undefined = 0
        case join = 1
        case leave = 2
        case nodeDown = 3
        case nodeUp = 4
        case processDown = 5
    }
}

/// One membership of a corosync CPG group (libcpg): join, multicast in total order, and the events delivered.
///
/// `events` ends when the group is left or corosync goes away (then make a new `CPGGroup` to rejoin). The
/// callbacks run on a thread of the group's own that sleeps in `poll` on libcpg's descriptor, never on
/// Swift's cooperative pool.
public final class CPGGroup: Sendable {
    /// The group's events, in delivery order.
    public let events: AsyncStream<CPGEvent>
    /// This process as a member.
    public let local: CPGMember
    public let name: String

    private let handle: cpg_handle_t
    private let state: CPGState
    private let sender: BlockingThreadPool
    private let stopDispatch: Wakeup

    /// The most events waiting to be consumed; beyond, the group is left (and `events` ends), so that a
    /// consumer that falls behind costs bounded memory and rejoins with a fresh view.
    public static let eventBuffer = 256

    /// Joins the group `name` (1 to 128 bytes) through the local corosync, on a thread of its own: libcpg's
    /// calls block without a time limit while corosync does not answer. Cancelling gives up waiting (a join
    /// that completes later is left at once).
    /// - Throws: `CPGError` (corosync not running: `CS_ERR_LIBRARY`), `WakeupError`, `CancellationError`.
    public static func join(name: String) async throws -> CPGGroup {
        try await connectOnOwnThread(name: "fencegate.cpg-join") {
            try CPGGroup(name: name)
        } abandon: { group in
            group.leave()  // the caller gave up: leave at once
        }
    }

    /// Joins the group, blocking the calling thread (see `join(name:)`).
    init(name: String) throws {
        let nameBytes = Array(name.utf8)
        precondition(!nameBytes.isEmpty && nameBytes.count <= Int(CPG_MAX_NAME_LENGTH), "a CPG name is 1 to 128 bytes")
        self.name = name
        let (events, continuation) = AsyncStream.makeStream(
            of: CPGEvent.self,
            bufferingPolicy: .bufferingOldest(Self.eventBuffer)
        )
        self.events = events
        let state = CPGState(continuation: continuation)
        self.state = state
        stopDispatch = try Wakeup()
        sender = BlockingThreadPool(name: "fencegate.cpg-send", maximumThreads: 1, maximumQueued: 4096)

        var model = cpg_model_v1_data_t()
        model.model = CPG_MODEL_V1
        model.cpg_deliver_fn = deliverCallback
        model.cpg_confchg_fn = membershipCallback
        model.flags = 0
        var handle = cpg_handle_t()
        let context = Unmanaged.passRetained(state).toOpaque()
        do {
            try withUnsafeMutablePointer(to: &model) { modelPointer throws(CPGError) in
                try modelPointer.withMemoryRebound(to: cpg_model_data_t.self, capacity: 1) { data throws(CPGError) in
                    try cpgCall("cpg_model_initialize") { cpg_model_initialize(&handle, CPG_MODEL_V1, data, context) }
                }
            }
        } catch {
            Unmanaged<CPGState>.fromOpaque(context).release()
            throw error
        }
        self.handle = handle
        var groupName = cpg_name()
        groupName.length = UInt32(nameBytes.count)
        withUnsafeMutableBytes(of: &groupName.value) { $0.copyBytes(from: nameBytes) }
        var nodeID: UInt32 = 0
        do {
            try cpgCall("cpg_local_get") { cpg_local_get(handle, &nodeID) }
            try cpgCall("cpg_join") { cpg_join(handle, &groupName) }
        } catch {
            cpg_finalize(handle)
            Unmanaged<CPGState>.fromOpaque(context).release()
            throw error
        }
        local = CPGMember(nodeID: nodeID, pid: UInt32(getpid()))
        var descriptor: Int32 = -1
        do {
            try cpgCall("cpg_fd_get") { cpg_fd_get(handle, &descriptor) }
        } catch {
            cpg_finalize(handle)
            Unmanaged<CPGState>.fromOpaque(context).release()
            throw error
        }
        try startDispatching(descriptor: descriptor)
    }

    /// Multicasts `bytes` to the group in total order (`CPG_TYPE_AGREED`); every member, this one included,
    /// receives it as `.message`. Waits out corosync's flow control until `deadline`.
    public func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) async throws {
        let handle = handle
        try await sender.run {
            while true {
                let result = bytes.withUnsafeBytes { raw -> cs_error_t in
                    var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress), iov_len: raw.count)
                    return cpg_mcast_joined(handle, CPG_TYPE_AGREED, &vector, 1)
                }
                if result == CS_OK { return }
                guard result == CS_ERR_TRY_AGAIN, ContinuousClock.now < deadline else {
                    throw CPGError("cpg_mcast_joined", result)
                }
                DetachedThread.sleep(milliseconds: 1)
            }
        }
    }

    /// Leaves the group and stops dispatching; `events` ends.
    /// `events` ends at once; libcpg is finalized on the dispatch thread (which may wait on corosync).
    public func leave() {
        state.finish()
        stopDispatch.signal()
    }

    deinit {
        state.finish()
        stopDispatch.signal()
    }

    private func startDispatching(descriptor: Int32) throws(DetachedThread.StartFailure) {
        let (handle, state, stop) = (handle, state, stopDispatch)
        state.onOverflow = { stop.signal() }
        // Until the leave (or a dispatch error: corosync went away).
        try startDispatchThread(
            name: "fencegate.cpg",
            descriptor: descriptor,
            stop: stop,
            dispatch: { cpg_dispatch(handle, CS_DISPATCH_ALL) },
            finalize: {
                cpg_finalize(handle)
                state.finish()
                // Balances the retain handed to libcpg as its context; no callback runs after cpg_finalize.
                Unmanaged.passUnretained(state).release()
            }
        )
    }
}

/// What the C callbacks reach through libcpg's context pointer: the stream to deliver to.
final class CPGState: @unchecked Sendable {
    // @unchecked: `onOverflow` is set once, before the dispatch thread starts, and only read after.
    private let continuation: AsyncStream<CPGEvent>.Continuation
    var onOverflow: @Sendable () -> Void = {}

    init(continuation: AsyncStream<CPGEvent>.Continuation) {
        self.continuation = continuation
    }

    /// Delivers `event`; if the buffer is full, ends the stream and leaves the group (an event dropped would
    /// leave this member's view silently wrong).
    func deliver(_ event: CPGEvent) {
        if case .dropped = continuation.yield(event) {
            continuation.finish()
            onOverflow()
        }
    }

    func finish() { continuation.finish() }
}

private func state(of handle: cpg_handle_t) -> CPGState? {
    var context: UnsafeMutableRawPointer?
    guard cpg_context_get(handle, &context) == CS_OK, let context else { return nil }
    return Unmanaged<CPGState>.fromOpaque(context).takeUnretainedValue()
}

private func members(_ list: UnsafePointer<cpg_address>?, _ count: Int) -> [cpg_address] {
    guard let list, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: list, count: count))
}

/// libcpg's deliver callback (on the dispatch thread): copies the message out.
private let deliverCallback: cpg_deliver_fn_t = { handle, _, nodeID, pid, message, length in
    guard let state = state(of: handle) else { return }
    let bytes = message.map { Array(UnsafeRawBufferPointer(start: $0, count: length)) } ?? []
    state.deliver(.message(from: CPGMember(nodeID: nodeID, pid: pid), bytes: bytes))
}

/// libcpg's membership callback (on the dispatch thread).
private let membershipCallback: cpg_confchg_fn_t = {
    handle,
    _,
    memberList,
    memberCount,
    leftList,
    leftCount,
    joinedList,
    joinedCount in
    guard let state = state(of: handle) else { return }
    let member = { (address: cpg_address) in CPGMember(nodeID: address.nodeid, pid: address.pid) }
    state.deliver(
        .membership(
            members: members(memberList, memberCount).map(member),
            left: members(leftList, leftCount).map {
                (member($0), CPGEvent.LeaveReason(rawValue: $0.reason) ?? .undefined)
            },
            joined: members(joinedList, joinedCount).map(member)
        )
    )
}
