import Locking

/// One FIFO lock per domain: operations on the same domain run one at a time, in arrival order;
/// operations on different domains never wait for each other.
///
/// Taking a free lock and releasing one are synchronous (a mutex, no actor hop), so a job on the hypervisor
/// pool can read a domain's state under its lock in the same hop; only waiting for a held lock suspends.
final class DomainLocks: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var held: Set<String> = []
        var waiters: [String: [Waiter]] = [:]
        var nextWaiterID: UInt64 = 0
    }

    private let state = Locked(State())

    /// Waits for the lock on `key`. Throws `CancellationError` if the task is cancelled while waiting,
    /// in which case the lock is not taken.
    func acquire(_ key: String) async throws {
        let id: UInt64? = state.withLock { state in
            guard state.held.contains(key) else {
                state.held.insert(key)
                return nil
            }
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let queued = state.withLock { state in
                    // Checked under the lock: a cancellation after this point finds the waiter in `abandon`.
                    guard !Task.isCancelled else { return false }
                    guard state.held.contains(key) else {
                        // Released between the first look and now: the lock is ours.
                        state.held.insert(key)
                        continuation.resume()
                        return true
                    }
                    state.waiters[key, default: []].append(Waiter(id: id, continuation: continuation))
                    return true
                }
                if !queued { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            abandon(key, waiter: id)
        }
    }

    /// Takes the lock on `key` only if nobody holds it. Returns whether it was taken.
    func tryAcquire(_ key: String) -> Bool {
        state.withLock { state in
            guard !state.held.contains(key) else { return false }
            state.held.insert(key)
            return true
        }
    }

    /// Releases the lock on `key`, handing it to the next waiter if there is one.
    func release(_ key: String) {
        let next: Waiter? = state.withLock { state in
            guard var queue = state.waiters[key], !queue.isEmpty else {
                state.held.remove(key)
                return nil
            }
            let next = queue.removeFirst()
            state.waiters[key] = queue.isEmpty ? nil : queue
            return next  // ownership passes; `held` keeps the key
        }
        next?.continuation.resume()
    }

    /// True if an operation holds the lock on `key` now.
    func isHeld(_ key: String) -> Bool {
        state.withLock { $0.held.contains(key) }
    }

    /// How many operations wait for the lock on `key`.
    func waiterCount(_ key: String) -> Int {
        state.withLock { $0.waiters[key]?.count ?? 0 }
    }

    private func abandon(_ key: String, waiter id: UInt64) {
        let waiter: Waiter? = state.withLock { state in
            guard var queue = state.waiters[key], let index = queue.firstIndex(where: { $0.id == id }) else {
                return nil
            }
            let waiter = queue.remove(at: index)
            state.waiters[key] = queue.isEmpty ? nil : queue
            return waiter
        }
        waiter?.continuation.resume(throwing: CancellationError())
    }
}
