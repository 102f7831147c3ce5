import FenceCore
import Locking
import Synchronization

/// Answers that one task at a time waits for, by key: the first answer counts and stays (a later wait
/// returns it at once); a wait that reaches its deadline, or whose task is cancelled, returns nil and leaves
/// the slot open for a later answer. `close` forgets a key.
final class Rendezvous<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Slot {
        var value: Value?
        /// The task waiting, and which of its waits it is.
        var waiter: (wait: UInt64, continuation: CheckedContinuation<Value?, Never>)?
        /// A wait whose deadline passed (or whose task was cancelled) before it began waiting.
        var expiredWait: UInt64?
    }

    private let slots = Locked<[Key: Slot]>([:])
    private let waits = Atomic<UInt64>(0)
    private let scheduler: DeadlineScheduler

    /// - Parameter scheduler: where waits' deadlines are kept.
    init(scheduler: DeadlineScheduler = .shared) {
        self.scheduler = scheduler
    }

    /// Opens a slot for `key`; false if one is open already.
    func open(_ key: Key) -> Bool {
        slots.withLock { slots in
            guard slots[key] == nil else { return false }
            slots[key] = Slot()
            return true
        }
    }

    /// Forgets `key`; returns its answer, if one came (a waiter, if any, gets nil).
    @discardableResult
    func close(_ key: Key) -> Value? {
        let slot = slots.withLock { $0.removeValue(forKey: key) }
        slot?.waiter?.continuation.resume(returning: nil)
        return slot?.value
    }

    /// The keys with open slots.
    var keys: [Key] { slots.withLock { Array($0.keys) } }

    /// Answers `key`, if its slot is open and not answered yet (then true).
    @discardableResult
    func answer(_ key: Key, _ value: Value) -> Bool {
        let taken = slots.withLock { slots -> (CheckedContinuation<Value?, Never>?, Bool) in
            guard var slot = slots[key], slot.value == nil else { return (nil, false) }
            let waiter = slot.waiter?.continuation
            slot.value = value
            slot.waiter = nil
            slots[key] = slot
            return (waiter, true)
        }
        taken.0?.resume(returning: value)
        return taken.1
    }

    /// Ends wait `wait` on `key` with nil: at once if it waits, else as soon as it begins.
    private func expire(_ key: Key, wait: UInt64) {
        let waiter = slots.withLock { slots -> CheckedContinuation<Value?, Never>? in
            guard let current = slots[key]?.waiter, current.wait == wait else {
                slots[key]?.expiredWait = wait
                return nil
            }
            slots[key]?.waiter = nil
            return current.continuation
        }
        waiter?.resume(returning: nil)
    }

    /// `key`'s answer, waiting for it until `deadline`; nil if none came by then (or the slot is closed).
    ///
    /// The deadline is kept by the process's one deadline scheduler and forgotten as soon as the wait ends:
    /// a timer task sleeping until the deadline would keep its memory that long even when cancelled, so the
    /// memory held would grow with request rate × timeout.
    func wait(_ key: Key, until deadline: ContinuousClock.Instant) async -> Value? {
        let wait = waits.add(1, ordering: .relaxed).newValue
        let timer = scheduler.schedule(at: deadline) { self.expire(key, wait: wait) }
        defer { scheduler.cancel(timer) }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
                let ready = slots.withLock { slots -> Value?? in
                    guard let slot = slots[key] else { return .some(nil) }
                    if let value = slot.value { return .some(value) }
                    if slot.expiredWait == wait || Task.isCancelled { return .some(nil) }
                    slots[key]?.waiter = (wait, continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            expire(key, wait: wait)
        }
    }
}
