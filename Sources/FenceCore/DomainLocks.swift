/// One FIFO lock per domain: operations on the same domain run one at a time, in arrival order;
/// operations on different domains never wait for each other.
actor DomainLocks {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private var held: Set<String> = []
    private var waiters: [String: [Waiter]] = [:]
    private var nextWaiterID: UInt64 = 0

    /// Waits for the lock on `key`. Throws `CancellationError` if the task is cancelled while waiting,
    /// in which case the lock is not taken.
    func acquire(_ key: String) async throws {
        guard held.contains(key) else {
            held.insert(key)
            return
        }
        let id = nextWaiterID
        nextWaiterID += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiters[key, default: []].append(Waiter(id: id, continuation: continuation))
                }
            }
        } onCancel: {
            Task { await self.abandon(key, waiter: id) }
        }
    }

    /// Takes the lock on `key` only if nobody holds it. Returns whether it was taken.
    func tryAcquire(_ key: String) -> Bool {
        guard !held.contains(key) else { return false }
        held.insert(key)
        return true
    }

    /// Releases the lock on `key`, handing it to the next waiter if there is one.
    func release(_ key: String) {
        if var queue = waiters[key], !queue.isEmpty {
            let next = queue.removeFirst()
            waiters[key] = queue.isEmpty ? nil : queue
            next.continuation.resume()  // ownership passes; `held` keeps the key
        } else {
            held.remove(key)
        }
    }

    /// True if an operation holds the lock on `key` now.
    func isHeld(_ key: String) -> Bool {
        held.contains(key)
    }

    /// How many operations wait for the lock on `key`.
    func waiterCount(_ key: String) -> Int {
        waiters[key]?.count ?? 0
    }

    private func abandon(_ key: String, waiter id: UInt64) {
        guard var queue = waiters[key], let index = queue.firstIndex(where: { $0.id == id }) else { return }
        let waiter = queue.remove(at: index)
        waiters[key] = queue.isEmpty ? nil : queue
        waiter.continuation.resume(throwing: CancellationError())
    }
}
