internal import CCorosync
import FenceCore
import FoundationEssentials
import Locking

/// Runs `connect` (libcpg and libvotequorum calls, which block without a time limit while corosync does
/// not answer) on a thread of its own. Cancelling gives up waiting; a connection made after that is handed
/// to `abandon` at once.
func connectOnOwnThread<Connection: Sendable>(
    name: String,
    _ connect: @escaping @Sendable () throws -> Connection,
    abandon: @escaping @Sendable (Connection) -> Void
) async throws -> Connection {
    let waiting = Locked<CheckedContinuation<Connection, any Error>?>(nil)
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            waiting.withLock { $0 = continuation }
            do {
                try DetachedThread.start(name: name) {
                    let result = Result { try connect() }
                    if let caller = waiting.withLock({ $0.take() }) {
                        caller.resume(with: result)
                    } else if let connection = try? result.get() {
                        abandon(connection)
                    }
                }
            } catch {
                waiting.withLock { $0.take() }?.resume(throwing: error)
            }
        }
    } onCancel: {
        waiting.withLock { $0.take() }?.resume(throwing: CancellationError())
    }
}

/// Starts the thread that dispatches a corosync library's callbacks: asleep in `poll` on `descriptor` until
/// there is something to dispatch or `stop` is signalled, ending at a dispatch error (corosync went away);
/// then `finalize` runs there (after it no callback runs). If the system refuses the thread, `finalize` runs
/// at once, here, and the refusal is thrown: the caller's connection fails with its cause.
func startDispatchThread(
    name: String,
    descriptor: Int32,
    stop: Wakeup,
    dispatch: @escaping @Sendable () -> cs_error_t,
    finalize: @escaping @Sendable () -> Void
) throws(DetachedThread.StartFailure) {
    do {
        try DetachedThread.start(name: name) {
            while (try? stop.waitReadable(descriptor)) == true, dispatch() == CS_OK {}
            finalize()
        }
    } catch {
        finalize()
        throw error
    }
}
