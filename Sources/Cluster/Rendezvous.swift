import Synchronization

/// Answers that one task each waits for, by key: the first answer counts; a wait ends with it, or with a
/// fallback at its deadline (or when the waiting task is cancelled).
final class Rendezvous<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Slot {
        var value: Value?
        var continuation: CheckedContinuation<Value, Never>?
    }

    private let slots = Mutex<[Key: Slot]>([:])

    /// Opens a slot for `key`; false if one is open already.
    func open(_ key: Key) -> Bool {
        slots.withLock { slots in
            guard slots[key] == nil else { return false }
            slots[key] = Slot()
            return true
        }
    }

    /// The keys with open slots.
    var keys: [Key] { slots.withLock { Array($0.keys) } }

    /// Answers `key`, if its slot is open and not answered yet.
    func answer(_ key: Key, _ value: Value) {
        let continuation = slots.withLock { slots -> CheckedContinuation<Value, Never>? in
            guard var slot = slots[key], slot.value == nil else { return nil }
            if let continuation = slot.continuation {
                slots[key] = nil
                return continuation
            }
            slot.value = value
            slots[key] = slot
            return nil
        }
        continuation?.resume(returning: value)
    }

    /// Waits for `key`'s answer until `deadline`, then answers it with `fallback()`; the slot is closed after.
    func wait(
        _ key: Key,
        until deadline: ContinuousClock.Instant,
        fallback: @escaping @Sendable () -> Value
    ) async
        -> Value
    {
        await withTaskGroup(of: Void.self) { timer in
            timer.addTask {
                // Wakes at the deadline, or when the wait is over (cancelled): answers if nothing else did.
                try? await Task.sleep(until: deadline)
                self.answer(key, fallback())
            }
            let value = await withCheckedContinuation { continuation in
                let ready = slots.withLock { slots -> Value? in
                    guard let slot = slots[key] else { return fallback() }
                    if let value = slot.value {
                        slots[key] = nil
                        return value
                    }
                    slots[key]?.continuation = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
            timer.cancelAll()
            return value
        }
    }
}
