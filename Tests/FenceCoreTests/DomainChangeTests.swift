import FenceCore
import Synchronization
import TestSupport
import Testing

/// The hypervisor's lifecycle events (libvirt's, from the real test driver) reach `domainChanges()`: what
/// cluster mode publishes to the other hosts without listing domains per request.
@Suite("Domain changes from the hypervisor's events")
struct DomainChangeTests {
    @Test("a fence, and a start, are each signalled; nothing is signalled while nothing changes")
    func lifecycleEventsAreSignalled() async throws {
        let harness = try await ServiceHarness()
        _ = try await harness.service.domains()  // opens the connection (and registers for its events)
        let changes = harness.service.domainChanges()
        let signals = Signals()
        let consumer = Task {
            for await _ in changes { signals.count.add(1, ordering: .relaxed) }
        }
        defer { consumer.cancel() }
        try await Task.sleep(for: .milliseconds(300))
        let quiet = signals.count.load(ordering: .relaxed)
        #expect(quiet == 0)
        _ = try await harness.service.perform(
            FenceRequest(action: .off, target: "pcmk1", origin: RequestOrigin(frontEnd: .cli, requester: "test"))
        )
        try await waitUntil("the stop is signalled") { signals.count.load(ordering: .relaxed) >= 1 }
        try await Task.sleep(for: .milliseconds(300))  // the off's events all delivered
        let afterOff = signals.count.load(ordering: .relaxed)
        _ = try await harness.service.perform(
            FenceRequest(action: .on, target: "pcmk1", origin: RequestOrigin(frontEnd: .cli, requester: "test"))
        )
        try await waitUntil("the start is signalled") { signals.count.load(ordering: .relaxed) > afterOff }
    }
}

private final class Signals: Sendable {
    let count = Atomic<Int>(0)
}
