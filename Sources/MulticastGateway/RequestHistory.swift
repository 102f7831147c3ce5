import FoundationEssentials
import Locking

/// Duplicate suppression, keyed as fence_virtd keys it: (request code, sequence number, domain ignoring
/// ASCII case).
///
/// Unlike upstream's single-threaded daemon, requests here run concurrently. A request's key is claimed
/// once its sender has proved it holds the key (the challenge-response), never before: a replayed packet
/// from someone without the key cannot hold a claim and make the genuine request look like a duplicate.
/// The claim is kept for `window` after the request is answered. Separately, a multicast request's call
/// back is marked while it runs, so the copies a client sends at once (one per interface, retransmissions)
/// make one call back, not one each.
final class RequestHistory: Sendable {
    struct Key: Hashable, Sendable {
        let request: UInt8
        let sequenceNumber: UInt32
        /// The domain field's bytes, ASCII letters folded to lower case (fence_virtd's `strcasecmp`).
        let domain: [UInt8]

        /// The key as bytes, for claims among the hosts of a cluster.
        var bytes: [UInt8] {
            [request] + withUnsafeBytes(of: sequenceNumber.littleEndian, Array.init) + domain
        }

        init(_ request: FenceXVMRequest) {
            self.request = request.requestCode
            self.sequenceNumber = request.sequenceNumber
            self.domain = request.domainField.prefix { $0 != 0 }.map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }
        }
    }

    private enum Entry {
        case inProgress
        case answered(at: ContinuousClock.Instant)
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var callingBack: Set<Key> = []
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

    private let state = Locked(State())
    private let window: Duration
    private let clock = ContinuousClock()

    init(window: Duration = .seconds(10)) {
        self.window = window
    }

    /// True if `key` is being answered or was answered within the window: a copy to drop unheard.
    func isKnown(_ key: Key) -> Bool {
        let now = clock.now
        return state.withLock { state in
            state.prune(before: now - window)
            return state.entries[key] != nil
        }
    }

    /// Marks a call back for `key` as running; false if the key is known or a call back for it runs already.
    func beginCallback(_ key: Key) -> Bool {
        let now = clock.now
        return state.withLock { state in
            state.prune(before: now - window)
            guard state.entries[key] == nil else { return false }
            return state.callingBack.insert(key).inserted
        }
    }

    /// The call back for `key` has ended (answered, failed, or its sender could not authenticate).
    func endCallback(_ key: Key) {
        state.withLock { _ = $0.callingBack.remove(key) }
    }

    /// Claims `key` for an authenticated sender; false if it is being answered or was answered within the
    /// window (a duplicate that must not run again).
    func claim(_ key: Key) -> Bool {
        let now = clock.now
        return state.withLock { state in
            state.prune(before: now - window)
            guard state.entries[key] == nil else { return false }
            state.entries[key] = .inProgress
            return true
        }
    }

    /// The claimed request was answered: keep the key for the window.
    func answered(_ key: Key) {
        state.withLock { state in
            // Taken under the lock, so the order list stays sorted by time.
            let now = clock.now
            state.entries[key] = .answered(at: now)
            state.answeredOrder.append((key, now))
        }
    }

    /// Keys claimed or remembered now, and call backs running (for tests).
    var trackedKeys: Int { state.withLock { $0.entries.count + $0.callingBack.count } }
}
