import Foundation
import Store
import TestSupport
import Testing

@testable import MulticastGateway

/// Hand-made packets and misbehaving callers, sent from guest namespaces with real sockets. What must hold:
/// nothing runs that should not (no audit row, since every operation has its row before it acts), nothing
/// runs twice, and legitimate guests are answered meanwhile.
@Suite("Hostile fence_xvm input", requiresRoot)
struct HostileInputTests {
    static let group = SocketAddress(host: "225.0.0.12", port: 1229)!
    static let callbackPort: UInt16 = 1229

    /// A signed request from guest `guest` for `operation` on `domain`, calling back its port 1229.
    static func request(
        _ lab: GatewayLab,
        guest: Int = 0,
        _ operation: FenceXVMOperation,
        _ domain: String,
        sequence: UInt32 = .random(in: 1...999_999)
    ) -> FenceXVMRequest {
        FenceXVMRequest(
            operation: operation,
            domain: domain,
            address: SocketAddress(host: lab.guestIPv4(guest), port: 0)!.bytes,
            port: callbackPort,
            sequenceNumber: sequence,
            family: 2
        )
    }

    static func key(_ lab: GatewayLab) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: lab.keyPath)))
    }

    /// From guest `guest`: listens on the callback port, multicasts `datagrams`, then for `watch` counts the
    /// daemon's call backs (answering each with the client's half of the protocol when `key` is given, or
    /// closing it at once). Returns the result bytes received (nil for a call back closed unanswered).
    static func send(
        _ lab: GatewayLab,
        guest: Int = 0,
        _ datagrams: [[UInt8]],
        watch: Duration,
        answeringWith key: [UInt8]? = nil
    ) async throws -> [UInt8?] {
        let address = SocketAddress(host: lab.guestIPv4(guest), port: callbackPort)!
        return try await lab.lab.inNamespace(lab.lab.guests[guest].namespace) {
            let listener = try Self.listener(on: address)
            let sender = try Socket.multicastSender(interface: "eth0")
            for datagram in datagrams { try sender.send(datagram, to: group) }
            var results: [UInt8?] = []
            let clock = ContinuousClock()
            let end = clock.now + watch
            while clock.now < end {
                guard let (connection, _) = try listener.accept(timeout: end - clock.now) else { continue }
                if let key {
                    results.append(
                        try FenceXVMClient.answerCallback(
                            on: connection,
                            auth: .sha256,
                            key: key,
                            timeout: .seconds(10)
                        )
                    )
                } else {
                    results.append(nil)
                }
            }
            return results
        }
    }

    /// A listener on the call-back port, retried for a while: a connection of an earlier round may still
    /// hold the port (FIN_WAIT_2 until the daemon closes its side), which SO_REUSEADDR does not cover.
    static func listener(on address: SocketAddress) throws -> Socket {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(15)
        while true {
            do {
                return try Socket.listener(on: address)
            } catch let error as SocketError where error.code == EADDRINUSE && clock.now < deadline {
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    @Test("malformed, unsigned, wrongly signed and wrongly addressed datagrams are dropped: no call back, no row")
    func malformedDatagrams() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate(["--hash", "sha256"])
        let key = try Self.key(lab)
        let otherKey = try SecureRandomBytes.make(4096)
        let valid = try Self.request(lab, .off, "pcmk1").signed(hashType: .sha256, key: key).bytes

        var zeroHash = try Self.request(lab, .off, "pcmk1").signed(hashType: .sha256, key: key)
        zeroHash.hash = [UInt8](repeating: 0, count: 64)
        var wrongFamily = Self.request(lab, .off, "pcmk1")
        wrongFamily.family = 99
        var unknownHash = Self.request(lab, .off, "pcmk1")
        unknownHash.hashType = 9
        var tampered = try Self.request(lab, .status, "pcmk1").signed(hashType: .sha256, key: key)
        tampered.requestCode = FenceXVMOperation.off.rawValue  // signed as status, sent as off
        var flipped = valid
        flipped[20] ^= 0x01  // one bit of the domain name

        let hostile: [(String, [UInt8])] = [
            ("empty", []),
            ("truncated", Array(valid.prefix(175))),
            ("one byte too long", valid + [0]),
            ("oversized", valid + [UInt8](repeating: 0x41, count: 1200)),
            ("garbage", (0..<176).map { _ in UInt8.random(in: 0...255) }),
            ("zero hash with a hash type", zeroHash.bytes),
            ("wrong key", try Self.request(lab, .off, "pcmk1").signed(hashType: .sha256, key: otherKey).bytes),
            (
                "weaker hash than the minimum",
                try Self.request(lab, .off, "pcmk1").signed(hashType: .sha1, key: key).bytes
            ),
            ("unsigned", try Self.request(lab, .off, "pcmk1").signed(hashType: .none, key: key).bytes),
            (
                "unknown hash type",
                try unknownHash.signed(hashType: .sha256, key: key).bytes.enumerated().map {
                    $0.offset == 1 ? 9 : $0.element
                }
            ),
            ("signed, then the operation changed", tampered.bytes),
            ("signed, then a bit of the domain flipped", flipped),
            ("unknown address family", try wrongFamily.signed(hashType: .sha256, key: key).bytes),
        ]
        for (name, datagram) in hostile {
            let callbacks = try await Self.send(lab, [datagram], watch: .milliseconds(400))
            #expect(callbacks.isEmpty, "\(name): the daemon called back")
        }
        #expect(try await lab.rows().isEmpty, "a hostile datagram reached the fence service")
        // Still answering: the real client, then the same valid packet that none of the above could run.
        #expect(try await lab.fenceXVM(["-H", "pcmk1", "-o", "status"]).stdout == "Status: ON\n")
        let answered = try await Self.send(lab, [valid], watch: .seconds(3), answeringWith: key)
        #expect(answered == [0])
        #expect(try await lab.rows().map(\.action) == ["status", "off"])
    }

    @Test("garbage in the flags byte changes nothing (fence_virtd ignores it): the request runs once")
    func garbageFlags() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate()
        let key = try Self.key(lab)
        var request = Self.request(lab, .status, "pcmk2")
        request.flags = 0xFF
        let answered = try await Self.send(
            lab,
            [try request.signed(hashType: .sha256, key: key).bytes],
            watch: .seconds(2),
            answeringWith: key
        )
        #expect(answered == [0])
        #expect(try await lab.rows().map(\.action) == ["status"])
    }

    @Test("a replay within the window is dropped; the same sequence number with another operation is not a replay")
    func replays() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate()
        let key = try Self.key(lab)
        let off = try Self.request(lab, .off, "pcmk3", sequence: 4242).signed(hashType: .sha256, key: key)
        // The original and three copies at once (as a client with several addresses sends them): one runs.
        let first = try await Self.send(
            lab,
            [off.bytes, off.bytes, off.bytes, off.bytes],
            watch: .seconds(2),
            answeringWith: key
        )
        #expect(first == [0])
        // Replayed later within the window, re-signed with fresh random bytes (as a retransmission is): dropped.
        let replay = try await Self.send(
            lab,
            [try off.signed(hashType: .sha256, key: key).bytes],
            watch: .seconds(1),
            answeringWith: key
        )
        #expect(replay.isEmpty)
        // Another operation with the same sequence number is another request.
        let on = try Self.request(lab, .on, "pcmk3", sequence: 4242).signed(hashType: .sha256, key: key)
        #expect(try await Self.send(lab, [on.bytes], watch: .seconds(2), answeringWith: key) == [0])
        let rows = try await lab.rows()
        #expect(rows.map(\.action) == ["off", "on"])
        #expect(rows.allSatisfy { $0.domainName == "pcmk3" && $0.result == .success })
    }

    @Test("a replay whose call back is not answered by a key holder runs nothing, after the window too")
    func replayWithoutTheKey() async throws {
        let lab = try await GatewayLab(guests: 2)
        try await lab.startFencegate()
        let key = try Self.key(lab)
        let off = try Self.request(lab, .off, "pcmk4").signed(hashType: .sha256, key: key)
        // A captured packet replayed by guest 2: the call back goes to guest 1's address (from the packet),
        // where nothing listens now: refused, nothing runs.
        #expect(try await Self.send(lab, guest: 1, [off.bytes], watch: .seconds(1)).isEmpty)
        // Guest 1 listens but cannot answer the challenge without the key: nothing runs. (The same bytes
        // again are dropped before any call back, see the next test: the packet here is signed anew, as a
        // packet captured before the gateway started, or longer ago than it remembers, would be.)
        let capturedLongAgo = try off.signed(hashType: .sha256, key: key)
        let impostor = try await lab.lab.inNamespace(lab.lab.guests[0].namespace) {
            let listener = try Self.listener(on: SocketAddress(host: lab.guestIPv4(0), port: Self.callbackPort)!)
            let sender = try Socket.multicastSender(interface: "eth0")
            try sender.send(capturedLongAgo.bytes, to: Self.group)
            guard let (connection, _) = try listener.accept(timeout: .seconds(3)) else { return "no call back" }
            do {
                _ = try FenceXVMClient.answerCallback(
                    on: connection,
                    auth: .sha256,
                    key: [UInt8](repeating: 7, count: 4096),
                    timeout: .seconds(3)
                )
                return "answered"
            } catch {
                return "\(error)"
            }
        }
        #expect(impostor.contains("response to our challenge is wrong"), "\(impostor)")
        #expect(try await lab.rows().isEmpty)
    }

    @Test("a captured packet replayed while its sender listens for a request of its own runs nothing")
    func replayAnsweredByItsSender() async throws {
        let lab = try await GatewayLab(guests: 2)
        try await lab.startFencegate()
        let key = try Self.key(lab)
        let off = try Self.request(lab, .off, "pcmk4").signed(hashType: .sha256, key: key)
        // Guest 2 replays guest 1's packet while guest 1 does not listen: the call back is refused.
        #expect(try await Self.send(lab, guest: 1, [off.bytes], watch: .seconds(1)).isEmpty)
        // Replayed again while guest 1 listens and holds the key (fence_xvm waiting for its own answer would
        // take this call back as that answer): no call back, since these exact bytes were received before.
        // Where the copy comes from does not matter: the call back goes to the address in the packet.
        let replayed = try await Self.send(lab, [off.bytes, off.bytes], watch: .seconds(2), answeringWith: key)
        #expect(replayed.isEmpty)
        #expect(try await lab.rows().isEmpty)
        // The same request signed anew (as fence_xvm signs each retransmission) is genuine: it runs, once.
        let genuine = try off.signed(hashType: .sha256, key: key)
        #expect(try await Self.send(lab, [genuine.bytes], watch: .seconds(2), answeringWith: key) == [0])
        #expect(try await lab.rows().map(\.action) == ["off"])
    }

    @Test("call backs that never connect, and clients that stall mid-challenge, hold up no one else and run nothing")
    func stallingClients() async throws {
        let lab = try await GatewayLab(guests: 2)
        try await lab.startFencegate()
        let key = try Self.key(lab)
        // Call backs to an address on the bridge that no one has (the connect times out after 5 s).
        var blackholes: [[UInt8]] = []
        for _ in 0..<20 {
            var request = Self.request(lab, .off, "pcmk5")
            request.address = SocketAddress(host: "198.18.0.99", port: 0)!.bytes + [UInt8](repeating: 0, count: 24)
            blackholes.append(try request.signed(hashType: .sha256, key: key).bytes)
        }
        // A guest that accepts the call back, then says nothing (the daemon waits 10 s for its challenge).
        let staller = Task {
            try await lab.lab.inNamespace(lab.lab.guests[1].namespace) { () -> Int in
                let listener = try Self.listener(on: SocketAddress(host: lab.guestIPv4(1), port: Self.callbackPort)!)
                let sender = try Socket.multicastSender(interface: "eth0")
                var held: [Socket] = []
                for _ in 0..<10 {
                    let request = try Self.request(lab, guest: 1, .off, "pcmk6").signed(hashType: .sha256, key: key)
                    try sender.send(request.bytes, to: Self.group)
                    if let (connection, _) = try listener.accept(timeout: .seconds(2)) {
                        // A partial challenge.
                        try connection.write([UInt8](repeating: 1, count: 10), timeout: .seconds(1))
                        held.append(connection)
                    }
                }
                Thread.sleep(forTimeInterval: 3)
                return held.count
            }
        }
        _ = try await Self.send(lab, blackholes, watch: .milliseconds(100))
        // Meanwhile, a legitimate guest is answered, several times.
        let clock = ContinuousClock()
        var latencies: [Duration] = []
        for _ in 0..<5 {
            let began = clock.now
            let result = try await lab.fenceXVM(["-H", "pcmk1", "-o", "status"])
            latencies.append(clock.now - began)
            #expect(result.stdout == "Status: ON\n", "\(result.stdout)\(result.stderr)")
        }
        // Its call backs run at most 8 at once to one address (the gateway's limit), so 8 are held.
        let held = try await staller.value
        #expect(held == 8)
        print("legitimate status while 20 call backs hang and 10 clients stall: \(latencies.map { "\($0)" })")
        let rows = try await lab.rows()
        #expect(
            rows.map(\.action) == [String](repeating: "status", count: 5),
            "\(rows.map { "\($0.action) \($0.domainName ?? "-")" })"
        )
    }

    @Test("a flood of valid-looking packets from many addresses: legitimate guests answered, no leak, nothing run")
    func flood() async throws {
        let lab = try await GatewayLab(guests: 3)
        try await lab.startFencegate()
        let key = try Self.key(lab)
        let wrongKey = try SecureRandomBytes.make(4096)
        let server = try #require(lab.server)
        let before = try ProcessCensus(pid: server.processIdentifier)
        // Guests 2 and 3 flood: wrongly signed packets whose call back would reach the flooder's own live
        // listener (so a daemon that skipped the signature check would be caught calling back), and correctly
        // signed ones whose call back port is closed (the daemon must connect, fail, and let go).
        let flooders = (1...2).map { guest in
            Task {
                var datagrams: [[UInt8]] = []
                for index in 0..<1500 {
                    let request = Self.request(lab, guest: guest, .off, "pcmk\(index % 6 + 1)")
                    datagrams.append(try request.signed(hashType: .sha256, key: wrongKey).bytes)
                }
                for _ in 0..<200 {
                    var request = Self.request(lab, guest: guest, .off, "pcmk6")
                    request.port = 9  // nothing listens there
                    datagrams.append(try request.signed(hashType: .sha256, key: key).bytes)
                }
                return try await Self.send(lab, guest: guest, datagrams, watch: .seconds(1))
            }
        }
        var answered = 0
        for _ in 0..<5
        where try await lab.fenceXVM(["-H", "pcmk1", "-o", "status", "-t", "10"]).stdout == "Status: ON\n" {
            answered += 1
        }
        for flooder in flooders { #expect(try await flooder.value.isEmpty) }
        #expect(answered == 5)
        // Once the flood is over, threads and descriptors return to where they were.
        let during = try ProcessCensus(pid: server.processIdentifier)
        do {
            try await waitUntil("the gateway lets go of the flood", limit: .seconds(45)) {
                let now = try ProcessCensus(pid: server.processIdentifier)
                return now.descriptors <= before.descriptors + 2 && now.threads <= before.threads + 8
            }
        } catch {
            Issue.record(
                "before \(before), after the flood \(during), now \(try ProcessCensus(pid: server.processIdentifier))"
            )
        }
        #expect(try await lab.rows().map(\.action) == [String](repeating: "status", count: 5))
    }
}

enum SecureRandomBytes {
    static func make(_ count: Int) throws -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255) }
    }
}
