import FenceCore
import Foundation
import Store
import Synchronization
import TestSupport
import Testing

@testable import FenceAPI

/// A GET of one domain answered on libmicrohttpd's thread, when nothing needs waiting for, and never by more of
/// its threads at once than leaves one free.
@Suite("HTTP reads answered on the server's thread")
struct InPlaceReadTests {
    @Test("only the thread the handler started on, and at most threads - 1 of them at once")
    func threadAndBound() async throws {
        let gate = InPlaceGate(threads: 2)
        /// The calling thread, as a handler's first synchronous part sees it (an async test moves between threads
        /// at each wait, so it is taken anew each time).
        func here() -> ServerThreadReads { ServerThreadReads(thread: pthread_self(), gate: gate) }
        #expect(here().run { 1 } == 1)
        // Another thread (where a handler's task goes on after its first wait): refused, body not run.
        let handlerThread = here()
        let elsewhere = Mutex<Int?>(-1)
        let thread = Thread { elsewhere.withLock { $0 = handlerThread.run { 2 } } }
        thread.start()
        try await waitUntil("the other thread asked") { elsewhere.withLock { $0 != -1 } }
        #expect(elsewhere.withLock { $0 } == .some(nil))

        // One thread waits in place: a second may not, until the first leaves.
        let held = Gate()
        let first = Mutex<Int?>(nil)
        let waiting = Thread {
            let reads = ServerThreadReads(thread: pthread_self(), gate: gate)
            first.withLock {
                $0 = reads.run {
                    held.pass()
                    return 3
                }
            }
        }
        waiting.start()
        try await waitUntil("a thread waits in place") { held.arrived == 1 }
        #expect(here().run { 4 } == nil)
        held.open()
        try await waitUntil("it left") { first.withLock { $0 } == 3 }
        #expect(here().run { 5 } == 5)

        // A server with one thread never lets it wait in place.
        #expect(ServerThreadReads(thread: pthread_self(), gate: InPlaceGate(threads: 1)).run { 6 } == nil)
    }

    @Test("a GET is answered in place; while libvirt holds one, the server answers others, and the held one after")
    func heldReadLeavesTheServerAnswering() async throws {
        try await APIHarness.withRunning { api in
            let faulty = api.harness.faulty
            // The first call opens the hypervisor connection (never opened in place).
            _ = try api.harness.state("pcmk2")
            let before = faulty.readsOnIdleConnection
            #expect(try await api.curl("GET", "/domains/pcmk2", token: api.viewer).status == 200)
            #expect(faulty.readsOnIdleConnection == before + 1, "the GET was not answered in place")

            // libvirt holds pcmk1's lookup: the GET waits in it on one of libmicrohttpd's two threads (and,
            // with the test driver's single connection, every other hypervisor call waits for it too).
            let gate = Gate()
            faulty.inject(.hang(gate), into: .domain, for: "pcmk1")
            let held = Task { try await api.curl("GET", "/domains/pcmk1", token: api.viewer) }
            try await waitUntil("the read waits in libvirt") { gate.arrived == 1 }
            #expect(faulty.readsOnIdleConnection == before + 2)
            // The other thread answers what needs no hypervisor, on new connections.
            for _ in 0..<4 {
                #expect(try await api.curl("GET", "/metrics", token: api.viewer).status == 200)
                #expect(try await api.curl("GET", "/operations?limit=1", token: api.viewer).status == 200)
            }
            gate.open()
            let answer = try await held.value
            #expect(answer.status == 200, "\(answer.text)")
            #expect((answer.json["name"] as? String) == "pcmk1")
            await api.harness.store.commitDeferredRows()
            let reads = try await api.harness.rows().filter { $0.action == "status" }
            #expect(reads.map(\.domainName) == ["pcmk2", "pcmk1"])
        }
    }
}
