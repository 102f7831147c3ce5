import Foundation
import Store
import Synchronization
import TestSupport
import Testing

@testable import MulticastGateway

/// Graceful shutdown of the gateway: a request being answered when SIGTERM arrives is finished and audited;
/// no new one is taken meanwhile; the process then exits 0.
@Suite("Gateway shutdown", requiresRoot)
struct GatewayShutdownTests {
    @Test("SIGTERM during a call back: the request still runs and is answered, no new one is taken, serve exits 0")
    func requestUnderWayIsFinished() async throws {
        let lab = try await GatewayLab(guests: 2)
        try await lab.startFencegate()
        let server = try #require(lab.server)
        let key = try HostileInputTests.key(lab)
        let request = try HostileInputTests.request(lab, .off, "pcmk1").signed(hashType: .sha256, key: key)
        let address = SocketAddress(host: lab.guestIPv4(0), port: HostileInputTests.callbackPort)!
        let calledBack = Atomic<Bool>(false)
        let release = Atomic<Bool>(false)

        // The guest answers its call back only after the server was told to stop.
        let guest = Task {
            try await lab.lab.inNamespace(lab.lab.guests[0].namespace) { () throws -> UInt8? in
                let listener = try HostileInputTests.listener(on: address)
                try Socket.multicastSender(interface: "eth0").send(request.bytes, to: HostileInputTests.group)
                guard let (connection, _) = try listener.accept(timeout: .seconds(10)) else { return nil }
                calledBack.store(true, ordering: .releasing)
                while !release.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.01) }
                return try FenceXVMClient.answerCallback(on: connection, auth: .sha256, key: key, timeout: .seconds(10))
            }
        }
        try await waitUntil("the gateway called back") { calledBack.load(ordering: .acquiring) }
        kill(server.processIdentifier, SIGTERM)
        // Meanwhile no new request is taken: another guest's gets no call back.
        try await Task.sleep(for: .milliseconds(300))
        let late = try HostileInputTests.request(lab, guest: 1, .off, "pcmk2").signed(hashType: .sha256, key: key)
        let lateAnswers = try await HostileInputTests.send(
            lab,
            guest: 1,
            [late.bytes],
            watch: .seconds(1.5),
            answeringWith: key
        )
        #expect(lateAnswers.isEmpty, "\(lateAnswers)")
        release.store(true, ordering: .releasing)
        let answer = try await guest.value
        #expect(answer == FenceXVMResult.success.rawValue, "\(String(describing: answer))")
        try await waitUntil("serve exits") { !server.isRunning }
        #expect(server.terminationStatus == 0, "\(lab.serverLog)")
        let rows = try await lab.rows()
        #expect(rows.map(\.action) == ["off"] && rows.first?.result == .success, "\(rows)")
        #expect(lab.serverLog.contains("request.id="), "\(lab.serverLog)")
    }
}
