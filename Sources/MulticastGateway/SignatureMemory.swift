import Locking

/// The signatures of the last `capacity` authenticated multicast requests, so that an exact copy of one
/// received before (a captured packet replayed) makes no call back.
///
/// fence_xvm signs every packet it sends anew, with 6 fresh random bytes: its retransmissions and its copies
/// for each interface differ from each other in the signature, so no genuine packet repeats one received
/// before. A replay does. Without this memory, a replay whose call back is refused (its sender not listening)
/// leaves nothing behind and may be sent again at once, and one replayed after `RequestHistory`'s window is a
/// new request: either runs if it reaches its sender while that sender is listening for a request of its own,
/// since the sender then holds the key and passes the challenge-response for it (and fence_xvm takes the
/// first call back as the answer to its own request).
///
/// Only packets that passed verification are remembered, so someone without the key cannot push genuine
/// signatures out. Memory is bounded: 8 bytes per signature (the first 8 bytes of its hash; two genuine
/// packets sharing them by chance has odds of about capacity² / 2⁶⁵, and costs one copy of a request that
/// is sent several times), the oldest forgotten first. A packet captured longer ago than that, or before the
/// gateway started, is still answered by the challenge-response alone.
final class SignatureMemory: Sendable {
    /// About 17 hours of 16 guests that each check their fence device every minute (one copy from each of
    /// two interfaces); 0.8 MB when full.
    static let defaultCapacity = 32_768

    private struct State {
        var remembered: Set<UInt64> = []
        /// The remembered signatures, oldest at `next` once the ring is full.
        var ring: [UInt64] = []
        var next = 0
    }

    private let state = Locked(State())
    private let capacity: Int

    init(capacity: Int = SignatureMemory.defaultCapacity) {
        precondition(capacity > 0, "a signature memory needs room for one signature")
        self.capacity = capacity
    }

    /// Remembers the signature of an authenticated request; false if it was remembered already (a replay).
    /// Unsigned requests (hash type `none`, accepted only when configured) all carry the same zero hash and
    /// are not remembered: true.
    func remember(_ request: FenceXVMRequest) -> Bool {
        guard request.hashType != HashType.none.rawValue else { return true }
        let signature = request.hash.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return state.withLock { state in
            guard state.remembered.insert(signature).inserted else { return false }
            if state.ring.count < capacity {
                state.ring.append(signature)
            } else {
                state.remembered.remove(state.ring[state.next])
                state.ring[state.next] = signature
                state.next = (state.next + 1) % capacity
            }
            return true
        }
    }

    /// How many signatures are remembered (for tests).
    var count: Int { state.withLock { $0.remembered.count } }
}
