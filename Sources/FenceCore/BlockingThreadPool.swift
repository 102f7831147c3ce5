package import Foundation

/// Threads for blocking C calls (libvirt), so they never occupy Swift's cooperative pool.
///
/// Elastic: a job runs at once on an idle thread, or on a new one if none is idle, so a hung call never
/// delays an unrelated one. Threads that stay idle for `idleTimeout` exit.
package final class BlockingThreadPool: @unchecked Sendable {
    // @unchecked: `pending`, `idle` and `threads` are only touched with `condition` locked.
    private let condition = NSCondition()
    private var pending: [@Sendable () -> Void] = []
    private var idle = 0
    private var threads = 0
    private let idleTimeout: TimeInterval
    private let name: String

    package init(name: String, idleTimeout: TimeInterval = 30) {
        self.name = name
        self.idleTimeout = idleTimeout
    }

    /// Runs `body` on a pool thread and returns its result.
    package func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit { continuation.resume(with: Result(catching: body)) }
        }
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        pending.append(job)
        let spawn = pending.count > idle
        if spawn { threads += 1 } else { condition.signal() }
        condition.unlock()
        if spawn {
            let thread = Thread { [self] in work() }
            thread.name = name
            thread.start()
        }
    }

    private func work() {
        condition.lock()
        while true {
            while pending.isEmpty {
                idle += 1
                let signalled = condition.wait(until: Date(timeIntervalSinceNow: idleTimeout))
                idle -= 1
                if !signalled && pending.isEmpty {
                    threads -= 1
                    condition.unlock()
                    return
                }
            }
            let job = pending.removeFirst()
            condition.unlock()
            job()
            condition.lock()
        }
    }
}
