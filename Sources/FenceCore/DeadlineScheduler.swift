import Dispatch
import FoundationEssentials
import Locking

/// Fires actions at deadlines, on one thread for the whole process.
///
/// Every request has a deadline, and almost every request finishes before it. A timer task per request
/// (`Task.sleep` until the deadline) keeps its memory until the deadline passes even when cancelled, so the
/// memory held grew with request rate × timeout. Here a cancelled deadline is forgotten at once: its action
/// is dropped from the table, and the heap is compacted whenever cancelled entries outnumber live ones, so
/// memory follows the requests in flight, not the requests of the last minute.
package final class DeadlineScheduler: Sendable {
    /// The scheduler every `withDeadline` uses.
    package static let shared = DeadlineScheduler(name: "fencegate.deadlines")

    /// A scheduled deadline, to cancel it.
    package struct Ticket: Sendable, Hashable {
        fileprivate let id: UInt64
    }

    private struct Entry {
        let instant: ContinuousClock.Instant
        let id: UInt64
    }

    private struct State {
        /// A binary min-heap by instant; may hold cancelled entries (absent from `actions`).
        var heap: [Entry] = []
        var actions: [UInt64: @Sendable () -> Void] = [:]
        var nextID: UInt64 = 0
        var threadStarted = false
        /// The instant the thread sleeps until; nil while it waits for a first deadline. A deadline after it
        /// needs no wake-up (the usual case: every request's deadline is later than the one before).
        var sleepingUntil: ContinuousClock.Instant?

        var cancelledInHeap: Int { heap.count - actions.count }

        mutating func push(_ entry: Entry) {
            heap.append(entry)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].instant < heap[parent].instant else { break }
                heap.swapAt(child, parent)
                child = parent
            }
        }

        mutating func popFirst() -> Entry {
            let first = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                siftDown(from: 0)
            }
            return first
        }

        mutating func siftDown(from start: Int) {
            var parent = start
            while true {
                let left = parent * 2 + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count, heap[left].instant < heap[smallest].instant { smallest = left }
                if right < heap.count, heap[right].instant < heap[smallest].instant { smallest = right }
                guard smallest != parent else { return }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }

        /// Drops cancelled entries and rebuilds the heap (O(n)).
        mutating func compact() {
            heap.removeAll { actions[$0.id] == nil }
            if heap.count > 1 {
                for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(from: index) }
            }
        }
    }

    private let state = Locked(State())
    /// Wakes the thread early: a new earliest deadline arrived.
    private let wakeUp = DispatchSemaphore(value: 0)
    private let name: String
    private let clock = ContinuousClock()

    package init(name: String) {
        self.name = name
    }

    /// Deadlines scheduled and not yet fired or cancelled; for tests that prove none outlive their request.
    package var pendingCount: Int { state.withLock { $0.actions.count } }

    /// Entries the heap holds, cancelled ones included; for tests that prove cancelled ones do not pile up.
    package var heapCount: Int { state.withLock { $0.heap.count } }

    /// Runs `action` on the scheduler's thread at `instant`, unless cancelled first. `action` must be quick:
    /// it delays the deadlines after it.
    package func schedule(at instant: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> Ticket {
        let (id, wakesThread, startThread) = state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.actions[id] = action
            state.push(Entry(instant: instant, id: id))
            let start = !state.threadStarted
            state.threadStarted = true
            let wakes = state.sleepingUntil.map { instant < $0 } ?? true
            if wakes { state.sleepingUntil = instant }
            return (id, wakes, start)
        }
        if startThread { startLoop() } else if wakesThread { wakeUp.signal() }
        return Ticket(id: id)
    }

    /// Forgets a deadline; its action will not run. Cancelling one that already fired does nothing.
    package func cancel(_ ticket: Ticket) {
        state.withLock { state in
            guard state.actions.removeValue(forKey: ticket.id) != nil else { return }
            if state.actions.isEmpty {
                state.heap.removeAll(keepingCapacity: state.heap.count <= 1024)
            } else if state.cancelledInHeap > 64, state.cancelledInHeap > state.actions.count {
                state.compact()
            }
        }
    }

    /// Starts the scheduler's thread. Refused (the system is out of threads), the next deadline scheduled tries
    /// again; the deadlines scheduled meanwhile fire once a thread runs.
    private func startLoop() {
        do {
            try DetachedThread.start(name: name) { [self] in runLoop() }
        } catch {
            state.withLock { $0.threadStarted = false }
        }
    }

    private func runLoop() {
        while true {
            let next: ContinuousClock.Instant? = state.withLock { state in
                while let first = state.heap.first, state.actions[first.id] == nil { _ = state.popFirst() }
                // A deadline cancelled meanwhile does not wake the thread: it wakes at the instant it chose,
                // looks at the heap once, and sleeps again (a signal per new deadline cost a wake-up each).
                let next = state.heap.first?.instant
                state.sleepingUntil = next
                return next
            }
            guard let next else {
                wakeUp.wait()
                continue
            }
            let now = clock.now
            if next > now {
                _ = wakeUp.wait(timeout: .now() + (next - now).dispatchInterval)
                continue
            }
            let due: [@Sendable () -> Void] = state.withLock { state in
                var due: [@Sendable () -> Void] = []
                while let first = state.heap.first, first.instant <= now {
                    let entry = state.popFirst()
                    if let action = state.actions.removeValue(forKey: entry.id) { due.append(action) }
                }
                return due
            }
            for action in due { action() }
        }
    }
}

extension Duration {
    /// The duration for `DispatchTime` arithmetic (rounded up to whole nanoseconds, so a wait never ends early).
    var dispatchInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = components
        let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !nanoseconds.overflow, nanoseconds.partialValue < Int64(Int.max) - 1 else { return .never }
        return .nanoseconds(Int(nanoseconds.partialValue + (attoseconds + 999_999_999) / 1_000_000_000))
    }
}
