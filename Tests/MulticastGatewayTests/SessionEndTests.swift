import FenceCore
import Foundation
import Store
import Synchronization
import TestSupport
import Testing

@testable import MulticastGateway

/// Where a session ends: a guest's next request must never find its previous session still counted (the
/// per-address limit would turn it away and fence_xvm would send it again), and a session is counted
/// closed only once its socket is.
@Suite("fence_xvm sessions end where their answer is sent")
struct SessionEndTests {
    /// What the session's `answered` saw: whether it ran inside the pool's job (before the session's task
    /// heard back from the pool), and whether the session's socket was closed by then.
    final class Ending: Sendable {
        private let seen = Mutex<[(inPoolJob: Bool, socketClosed: Bool)]>([])
        let socket: WeakSocket
        let pool: BlockingThreadPool
        let client: Task<UInt8, any Error>

        init(_ socket: WeakSocket, pool: BlockingThreadPool, client: Task<UInt8, any Error>) {
            self.socket = socket
            self.pool = pool
            self.client = client
        }

        /// The byte the client read.
        var answer: UInt8 {
            get async throws { try await client.value }
        }

        func note() {
            let entry = (pool.census.busy == 1, socket.isGone)
            seen.withLock { $0.append(entry) }
        }
        var all: [(inPoolJob: Bool, socketClosed: Bool)] { seen.withLock { $0 } }
    }

    /// A reference that does not keep the socket open.
    final class WeakSocket: @unchecked Sendable {
        private let lock = NSLock()
        private weak var socket: Socket?
        init(_ socket: Socket) { self.socket = socket }
        var isGone: Bool { lock.withLock { socket == nil } }
    }

    /// Runs one session over a socket pair, the test playing fence_xvm's side of the call back on a thread of
    /// its own; returns the answer byte and what `answered` saw.
    static func session(
        _ operation: FenceXVMOperation,
        _ domain: String,
        on service: FenceService,
        timeout: Duration = .seconds(30)
    ) async throws -> (answer: UInt8, endings: [(inPoolJob: Bool, socketClosed: Bool)]) {
        let (session, ending) = try start(operation, domain, on: service, timeout: timeout)
        try await session.value
        return (try await ending.answer, ending.all)
    }

    /// A session started (its task) and what it saw; the test plays fence_xvm's side on a thread of its own
    /// (patient: 30 s). `timeout`: the session's deadline for the call back's exchange.
    static func start(
        _ operation: FenceXVMOperation,
        _ domain: String,
        on service: FenceService,
        timeout: Duration
    ) throws -> (session: Task<Void, any Error>, ending: Ending) {
        var configuration = GatewayConfiguration()
        configuration.key = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let pool = BlockingThreadPool(name: "test.gateway", maximumThreads: 4)
        let gateway = FenceXVMSession(service: service, pool: pool, logger: ServiceHarness.logger)
        let (serverSide, clientSide) = try Socket.connectedPair()
        let key = configuration.key
        let client = Task {
            try await onOwnThread {
                try FenceXVMClient.answerCallback(on: clientSide, auth: .sha256, key: key, timeout: .seconds(30))
            }
        }
        let ending = Ending(WeakSocket(serverSide), pool: pool, client: client)
        let handOff = SocketHandOff(serverSide)
        _ = consume serverSide  // the session holds the only reference once it took the socket
        let request = FenceXVMRequest(
            operation: operation,
            domain: domain,
            address: [198, 18, 0, 11],
            port: 1229,
            sequenceNumber: 1,
            family: 2
        )
        let session = Task {
            try await gateway.run(
                request,
                configuration: configuration,
                deadline: .now + timeout,
                connect: { try handOff.take() },
                claim: { true },
                answered: { ending.note() },
                from: FenceXVMSession.Requester(
                    frontEnd: .multicast,
                    identity: "198.18.0.11",
                    clientAddress: "198.18.0.11",
                    requestID: "test"
                )
            )
        }
        return (session, ending)
    }

    @Test("a status with nothing to wait for is answered and ended in the pool's job, its socket closed first")
    func statusEndsOnThePoolThread() async throws {
        let harness = try await ServiceHarness()
        _ = try harness.state("pcmk1")  // a hypervisor connection open (statusAtOnce never opens one)
        let status = try await Self.session(.status, "pcmk1", on: harness.service)
        #expect(status.answer == FenceXVMResult.success.rawValue)
        #expect(status.endings.count == 1)
        #expect(status.endings.first?.inPoolJob == true)
        #expect(status.endings.first?.socketClosed == true)
    }

    @Test("any other request ends once answered through the fence service, its socket closed first")
    func otherRequestsEndAfterTheService() async throws {
        let harness = try await ServiceHarness()
        let off = try await Self.session(.off, "pcmk2", on: harness.service)
        #expect(off.answer == FenceXVMResult.success.rawValue)
        #expect(off.endings.count == 1)
        #expect(off.endings.first?.inPoolJob == false)
        #expect(off.endings.first?.socketClosed == true)
        // A status while an operation holds a domain takes the same way.
        let (operation, gate) = try await harness.offHungInDestroy("pcmk3")
        let status = try await Self.session(.status, "pcmk2", on: harness.service)
        #expect(status.answer == FenceXVMResult.off.rawValue)
        #expect(status.endings.count == 1)
        #expect(status.endings.first?.inPoolJob == false)
        #expect(status.endings.first?.socketClosed == true)
        gate.open()
        _ = try await operation.value
        #expect(try await harness.rows().map(\.action) == ["off", "off", "status"])
    }

    @Test("a status answered at once that libvirt holds ends its session at a status's deadline, its thread running on")
    func stuckStatusEndsAtTheDeadline() async throws {
        var configuration = FenceService.Configuration()
        configuration.operationTimeout = .seconds(1)
        let harness = try await ServiceHarness(configuration: configuration)
        _ = try harness.state("pcmk1")
        let gate = Gate()
        harness.faulty.inject(.hang(gate), into: .state, for: Fixtures.uuids["pcmk1"]!)
        let clock = ContinuousClock()
        let began = clock.now
        let (session, ending) = try Self.start(.status, "pcmk1", on: harness.service, timeout: .seconds(2))
        // The call back's deadline (2 s) and a status's (1 s): the session ends, unanswered, the read still hung.
        let outcome = Mutex<Result<Void, any Error>?>(nil)
        Task { outcome.withLock { [result = await session.result] in $0 = result } }
        try? await waitUntil("the session ended", limit: .seconds(10)) { outcome.withLock { $0 != nil } }
        let ended = clock.now - began
        let failed = outcome.withLock { $0.map { (try? $0.get()) == nil } }
        #expect(failed == true, "after \(ended): ended \(failed.map { $0 ? "with an error" : "answered" } ?? "not")")
        #expect(gate.arrived == 1)
        #expect(ending.all.isEmpty)
        gate.open()
        // When libvirt answers, the thread sends the answer (the client still listens here) and ends once.
        #expect(try await ending.answer == FenceXVMResult.success.rawValue)
        try await waitUntil("the late answer ended the session") { ending.all.count == 1 }
    }
}
