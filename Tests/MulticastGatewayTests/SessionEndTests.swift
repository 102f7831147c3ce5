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

        init(_ socket: WeakSocket, pool: BlockingThreadPool) {
            self.socket = socket
            self.pool = pool
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
        on service: FenceService
    ) async throws -> (answer: UInt8, endings: [(inPoolJob: Bool, socketClosed: Bool)]) {
        var configuration = GatewayConfiguration()
        configuration.key = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let pool = BlockingThreadPool(name: "test.gateway", maximumThreads: 4)
        let session = FenceXVMSession(service: service, pool: pool, logger: ServiceHarness.logger)
        let (serverSide, clientSide) = try Socket.connectedPair()
        let ending = Ending(WeakSocket(serverSide), pool: pool)
        let handOff = SocketHandOff(serverSide)
        _ = consume serverSide  // the session holds the only reference once it took the socket
        let key = configuration.key
        let client = Task {
            try await onOwnThread {
                try FenceXVMClient.answerCallback(on: clientSide, auth: .sha256, key: key, timeout: .seconds(5))
            }
        }
        let request = FenceXVMRequest(
            operation: operation,
            domain: domain,
            address: [198, 18, 0, 11],
            port: 1229,
            sequenceNumber: 1,
            family: 2
        )
        try await session.run(
            request,
            configuration: configuration,
            deadline: .now + .seconds(5),
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
        return (try await client.value, ending.all)
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
}
