internal import CCorosync
import FenceCore
import FoundationEssentials
import Synchronization

/// Whether this host's partition of the cluster is quorate, as corosync's votequorum says (CPG ignores
/// quorum: a host cut off keeps delivering in a group of one). Tracks changes through libvotequorum's
/// notifications, on a dispatch thread asleep in `poll`; `changes` yields each new value and ends when
/// corosync goes away or `stop()` is called.
public final class QuorumWatch: Sendable {
    /// Each quorum state, the current one first.
    public let changes: AsyncStream<Bool>

    private let handle: votequorum_handle_t
    private let state: QuorumState
    private let stopDispatch: Wakeup

    /// Starts tracking, on a thread of its own (libvotequorum's calls block while corosync does not answer).
    /// - Throws: `CPGError` (corosync not running), `WakeupError`, `CancellationError`.
    public static func start() async throws -> QuorumWatch {
        try await connectOnOwnThread(name: "fencegate.quorum-start") {
            try QuorumWatch()
        } abandon: { watch in
            watch.stop()  // the caller gave up
        }
    }

    private init() throws {
        let (changes, continuation) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingNewest(8))
        self.changes = changes
        let state = QuorumState(continuation: continuation)
        self.state = state
        stopDispatch = try Wakeup()
        var callbacks = votequorum_callbacks_t()
        callbacks.votequorum_quorum_notify_fn = quorumNotification
        var handle = votequorum_handle_t()
        try cpgCall("votequorum_initialize") { votequorum_initialize(&handle, &callbacks) }
        self.handle = handle
        let context = Unmanaged.passRetained(state).toOpaque()
        var descriptor: Int32 = -1
        do {
            try cpgCall("votequorum_context_set") { votequorum_context_set(handle, context) }
            try cpgCall("votequorum_trackstart") {
                votequorum_trackstart(handle, 0, UInt32(CS_TRACK_CURRENT | CS_TRACK_CHANGES))
            }
            try cpgCall("votequorum_fd_get") { votequorum_fd_get(handle, &descriptor) }
        } catch {
            votequorum_finalize(handle)
            Unmanaged<QuorumState>.fromOpaque(context).release()
            throw error
        }
        // Until stopped (or a dispatch error: corosync went away).
        try startDispatchThread(
            name: "fencegate.quorum",
            descriptor: descriptor,
            stop: stopDispatch,
            dispatch: { [handle] in votequorum_dispatch(handle, CS_DISPATCH_ALL) },
            finalize: { [handle] in
                votequorum_finalize(handle)
                state.finish()
                Unmanaged.passUnretained(state).release()  // the context's retain; no callback runs after finalize
            }
        )
    }

    /// Stops tracking; `changes` ends at once.
    public func stop() {
        state.finish()
        stopDispatch.signal()
    }

    deinit { stop() }
}

/// What libvotequorum's callback reaches through the context pointer.
final class QuorumState: Sendable {
    private let continuation: AsyncStream<Bool>.Continuation

    init(continuation: AsyncStream<Bool>.Continuation) {
        self.continuation = continuation
    }

    func deliver(_ quorate: Bool) { continuation.yield(quorate) }
    func finish() { continuation.finish() }
}

/// libvotequorum's quorum notification (on the dispatch thread).
private let quorumNotification: votequorum_quorum_notification_fn_t = { handle, _, quorate, _, _ in
    var context: UnsafeMutableRawPointer?
    guard votequorum_context_get(handle, &context) == CS_OK, let context else { return }
    Unmanaged<QuorumState>.fromOpaque(context).takeUnretainedValue().deliver(quorate != 0)
}
