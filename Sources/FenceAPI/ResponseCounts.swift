import Synchronization

/// The responses the HTTP API has sent, by status code, for the metrics. Shared by the API, which counts, and
/// the metrics route, which reads.
final class ResponseCounts: Sendable {
    private let counts = Mutex<[Int: UInt64]>([:])

    func count(_ status: Int) {
        counts.withLock { $0[status, default: 0] += 1 }
    }

    var byStatus: [Int: UInt64] { counts.withLock { $0 } }
}
