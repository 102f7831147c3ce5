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

    private let entries = Mutex<[Key: Entry]>([:])
    private let window: Duration
    private let clock = ContinuousClock()

    init(window: Duration = .seconds(10)) {
        self.window = window
    }

    /// Claims `key`; false if it is being processed or was answered within the window (a duplicate).
    func claim(_ key: Key) -> Bool {
        let now = clock.now
        return entries.withLock { entries in
            entries = entries.filter { _, entry in
                if case .answered(let at) = entry { return now - at < window }
                return true
            }
            guard entries[key] == nil else { return false }
            entries[key] = .inProgress
            return true
        }
    }

    /// The request was answered: keep the key for the window.
    func answered(_ key: Key) {
        let now = clock.now
        entries.withLock { $0[key] = .answered(at: now) }
    }

    /// The request could not be answered (no callback, failed authentication): forget the claim.
    func release(_ key: Key) {
        entries.withLock { _ = $0.removeValue(forKey: key) }
    }
}
