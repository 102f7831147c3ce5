import Foundation
import Synchronization

/// Duplicate suppression, keyed as fence_virtd keys it: (request code, sequence number, domain ignoring case).
///
/// Unlike upstream's single-threaded daemon, requests here run concurrently, so a key is claimed when
/// processing starts: a second copy arriving meanwhile is dropped. The claim is released if the callback or
/// authentication fails (the client never got an answer, so a later copy may run), and kept for `window`
/// after the request is answered.
final class RequestHistory: Sendable {
    struct Key: Hashable, Sendable {
        let request: UInt8
        let sequenceNumber: UInt32
        let domain: String

        init(_ request: FenceXVMRequest) {
            self.request = request.requestCode
            self.sequenceNumber = request.sequenceNumber
            self.domain = request.domain.lowercased()
        }
    }

    private enum Entry {
        case inProgress
        case answered(at: ContinuousClock.Instant)
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Answered keys in the order they were answered, so expired ones are pruned from the front in
        /// constant time per key (a scan of every entry per packet made the listener thread the bottleneck).
        var answeredOrder: [(key: Key, at: ContinuousClock.Instant)] = []
        var head = 0

        mutating func prune(before limit: ContinuousClock.Instant) {
            while head < answeredOrder.count, answeredOrder[head].at <= limit {
                let (key, at) = answeredOrder[head]
                if case .answered(let recorded) = entries[key], recorded == at { entries[key] = nil }
                head += 1
            }
            if head >= 1024, head * 2 >= answeredOrder.count {
                answeredOrder.removeFirst(head)
                head = 0
            }
        }
    }

    private let state = Mutex(State())
    private let window: Duration
    private let clock = ContinuousClock()

    init(window: Duration = .seconds(10)) {
        self.window = window
    }

    /// Claims `key`; false if it is being processed or was answered within the window (a duplicate).
    func claim(_ key: Key) -> Bool {
        let now = clock.now
        return state.withLock { state in
            state.prune(before: now - window)
            guard state.entries[key] == nil else { return false }
            state.entries[key] = .inProgress
            return true
        }
    }

    /// The request was answered: keep the key for the window.
    func answered(_ key: Key) {
        state.withLock { state in
            // Taken under the lock, so the order list stays sorted by time.
            let now = clock.now
            state.entries[key] = .answered(at: now)
            state.answeredOrder.append((key, now))
        }
    }

    /// Keys claimed or remembered now (for tests).
    var trackedKeys: Int { state.withLock { $0.entries.count } }

    /// The request could not be answered (no callback, failed authentication): forget the claim.
    func release(_ key: Key) {
        state.withLock { _ = $0.entries.removeValue(forKey: key) }
    }
}
