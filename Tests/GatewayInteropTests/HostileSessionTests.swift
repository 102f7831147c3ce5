import Foundation
import Store
import TestSupport
import Testing

@testable import MulticastGateway

/// What peers can make the gateway hold before they prove they have the key: TCP connections (in total and
/// per address), time (one deadline for the whole exchange), and call backs in flight.
@Suite("Hostile peers on the gateway's listeners", requiresRoot)
struct HostileSessionTests {
    /// `count` TCP connections to the lab's fence_virt listener from guest `guest`, held open.
    static func connect(_ lab: GatewayLab, guest: Int, count: Int) async throws -> [Socket] {
        let address = SocketAddress(host: NetworkLab.hostIPv4, port: 1229)!
        return try await lab.lab.inNamespace(lab.lab.guests[guest].namespace) {
            try (0..<count).map { _ in try Socket.connection(to: address, timeout: .seconds(2)) }
        }
    }

    /// How many of `sockets` the server has not closed (checked on a thread of its own: blocking calls stay
    /// off Swift's cooperative pool, which in-process services of other tests need).
    static func stillOpen(_ sockets: [Socket]) async throws -> Int {
        try await onOwnThread { openCount(sockets) }
    }

    private static func openCount(_ sockets: [Socket]) -> Int {
        sockets.filter { socket in
            do {
                _ = try socket.read(exactly: 1, timeout: .milliseconds(1))
                return true
            } catch let error as SocketError {
                return error.description.contains("timed out")
            } catch {
                return false
            }
        }.count
    }

    @Test("fence_virt -T: connections are limited in total and per address; a legitimate client still gets in")
    func tcpConnectionLimits() async throws {
        let lab = try await GatewayLab(guests: 3)
        try await lab.startFencegate(
            [
                "--tcp-listen", NetworkLab.hostIPv4, "--tcp-max-connections", "12", "--tcp-max-connections-per-address",
                "8",
            ],
            multicast: false
        )
        let server = try #require(lab.server)
        let before = try ProcessCensus(pid: server.processIdentifier)

        // Guest 0 opens 40 idle connections: 8 are kept, the others closed at once. (A connection the server
        // has not accepted yet looks open: wait until it has.)
        let first = try await Self.connect(lab, guest: 0, count: 40)
        try await waitUntil("the server keeps 8 of guest 0's connections") { try await Self.stillOpen(first) == 8 }
        // Guest 1 opens 10 more: the total limit keeps 4 of them.
        let second = try await Self.connect(lab, guest: 1, count: 10)
        try await waitUntil("the server keeps 4 of guest 1's connections") { try await Self.stillOpen(second) == 4 }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await Self.stillOpen(first) == 8)
        #expect(try await Self.stillOpen(second) == 4)
        let held = try ProcessCensus(pid: server.processIdentifier)
        print("fence_virt -T, 50 idle connections from 2 addresses: before \(before), while held \(held)")
        // Before: a thread and a descriptor per connection, however many.
        #expect(held.threads <= before.threads + 12 + 4, "before \(before), held \(held)")
        #expect(held.descriptors <= before.descriptors + 12 + 4, "before \(before), held \(held)")

        // Guest 1's go away; guest 2, a legitimate client, is answered while guest 0 still holds its 8.
        for socket in second { try? socket.shutdownWriting() }
        _ = consume second
        try await waitUntil("guest 1's connections are gone") {
            try ProcessCensus(pid: server.processIdentifier).descriptors <= held.descriptors - 4
        }
        let legitimate = try await lab.lab.run(
            in: lab.lab.guests[2].namespace,
            [
                "/usr/sbin/fence_virt", "-T", NetworkLab.hostIPv4, "-k", lab.keyPath, "-H", "pcmk1", "-o", "status",
                "-t", "5",
            ]
        )
        #expect(legitimate.stdout == "Status: ON\n", "\(legitimate.stdout)\(legitimate.stderr)")
        _ = consume first
        #expect(try await lab.rows().map(\.action) == ["status"])
    }

    @Test("fence_virt -T: a client that sends a byte now and then is cut off when the whole exchange's time is up")
    func slowDripIsCutOff() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate(["--tcp-listen", NetworkLab.hostIPv4], multicast: false)
        let connection = try #require(try await Self.connect(lab, guest: 0, count: 1).first)
        // One byte a second; each wait is short, but the request never completes. The server must close
        // by the exchange's deadline (10 s), not after 176 reads of 10 s each. On a thread of its own: the
        // waits must not block Swift's cooperative pool.
        // Counted in bytes sent, not in seconds: each byte is followed by a wait of a second, so the count
        // can only overstate the time; the deadline allows about 10, a read timeout per byte allowed all 176.
        let (bytesSent, elapsed) = try await onOwnThread { () -> (Int, Duration) in
            let clock = ContinuousClock()
            let began = clock.now
            for sent in 1...176 {
                do {
                    try connection.write([0x41], timeout: .seconds(1))
                    _ = try connection.read(exactly: 1, timeout: .seconds(1))
                    return (sent, clock.now - began)
                } catch let error as SocketError where error.description.contains("timed out") {
                    continue
                } catch {
                    return (sent, clock.now - began)
                }
            }
            return (176, clock.now - began)
        }
        print("fence_virt -T, a byte a second: closed after \(bytesSent) bytes, \(elapsed)")
        #expect(bytesSent < 60, "the server kept a dripping connection for \(bytesSent) bytes (\(elapsed))")
        #expect(try await lab.rows().isEmpty)
    }

    @Test("call backs are limited: signed requests whose call back never connects hold at most the limit")
    func callbackLimit() async throws {
        let lab = try await GatewayLab(guests: 2)
        try await lab.startFencegate(["--max-callbacks", "4"])
        let server = try #require(lab.server)
        let key = [UInt8](try Data(contentsOf: URL(fileURLWithPath: lab.keyPath)))
        // One legitimate request first, so that what the service opens on first use is open before counting.
        #expect(try await lab.fenceXVM(["-H", "pcmk1", "-o", "status"]).stdout == "Status: ON\n")
        let before = try ProcessCensus(pid: server.processIdentifier)
        // 30 signed requests from guest 1 whose call backs go to an address nobody has (5 s to time out).
        var datagrams: [[UInt8]] = []
        for _ in 0..<30 {
            var request = HostileInputTests.request(lab, guest: 1, .off, "pcmk5")
            request.address = SocketAddress(host: "198.18.0.99", port: 0)!.bytes + [UInt8](repeating: 0, count: 24)
            datagrams.append(try request.signed(hashType: .sha256, key: key).bytes)
        }
        _ = try await HostileInputTests.send(lab, guest: 1, datagrams, watch: .milliseconds(300))
        let during = try ProcessCensus(pid: server.processIdentifier)
        print("30 call backs to a black hole with --max-callbacks 4: before \(before), during \(during)")
        #expect(during.descriptors <= before.descriptors + 4, "before \(before), during \(during)")
        #expect(during.threads <= before.threads + 4 + 2, "before \(before), during \(during)")
        // Once they time out, a legitimate guest is answered.
        let status = try await lab.fenceXVM(["-H", "pcmk1", "-o", "status", "-t", "20"])
        #expect(status.stdout == "Status: ON\n", "\(status.stdout)\(status.stderr)")
        #expect(try await lab.rows().map(\.action) == ["status", "status"])
    }
}
