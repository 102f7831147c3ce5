import FenceCore
import Foundation
import Synchronization

/// libmicrohttpd's thread running a request's handler (up to the handler's first wait), as a place where a read
/// may wait briefly in the hypervisor (`FenceService.read(_:inPlace:)`): answered there, a GET makes no trip to
/// the hypervisor's pool and back. `run` refuses on any other thread (the handler has moved on to Swift's pool)
/// and beyond the server's `InPlaceGate`.
struct ServerThreadReads: InPlaceReads {
    /// The thread the handler started on.
    let thread: pthread_t
    let gate: InPlaceGate

    func run<T>(_ body: () -> T) -> T? {
        guard pthread_equal(thread, pthread_self()) != 0, gate.enter() else { return nil }
        defer { gate.leave() }
        return body()
    }
}

/// How many of the server's threads may wait in the hypervisor for a read at once: fewer than it has, so that
/// while libvirt keeps such a read waiting, another thread still accepts connections and answers them (a
/// fence, `/healthz`); the waiting thread's own connections wait with it.
final class InPlaceGate: Sendable {
    let limit: Int
    private let waiting = Atomic<Int>(0)

    /// `threads`: libmicrohttpd's polling threads; one of them never waits here.
    init(threads: Int) {
        limit = max(0, threads - 1)
    }

    /// Counts the calling thread in, if the limit allows.
    func enter() -> Bool {
        var current = waiting.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, found) = waiting.compareExchange(
                expected: current,
                desired: current + 1,
                ordering: .acquiring
            )
            if exchanged { return true }
            current = found
        }
        return false
    }

    func leave() {
        waiting.subtract(1, ordering: .releasing)
    }
}
