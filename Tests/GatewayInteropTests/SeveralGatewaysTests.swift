import Foundation
import Store
import TestSupport
import Testing

@testable import MulticastGateway

/// Several gateways in one process (fence_virtd needs a daemon per key and cannot listen on IPv4 and IPv6 at
/// once): one host serving two guest clusters on two bridges with two keys, the first over IPv4 and IPv6 at
/// once, with the unchanged fence_xvm.
@Suite("Several gateways in one process", requiresRoot)
struct SeveralGatewaysTests {
    static let header = """
        [hypervisor]
        uri = "\(Fixtures.clusterURI)"
        [http]
        listen = "127.0.0.1:0"

        """

    /// One `[[gateway]]` table: a multicast listener on `bridge`, and one group of `guests` and `domains`.
    static func gateway(key: String, address: String, bridge: String, guests: [String], domains: [String]) -> String {
        """
        [[gateway]]
        key_file = "\(key)"
        [gateway.multicast]
        address = "\(address)"
        interface = "\(bridge)"
        [[gateway.group]]
        ip = [\(guests.map { "\"\($0)\"" }.joined(separator: ", "))]
        domains = [\(domains.map { "\"\($0)\"" }.joined(separator: ", "))]

        """
    }

    @Test("two bridges, two keys, two clusters, IPv4 and IPv6 at once: each guest reaches its own gateway only")
    func twoClustersOnTwoBridges() async throws {
        // Cluster A: guests 0 and 1 on br0 (pcmk1, pcmk2). Cluster B: guests 2 and 3 on br1 (pcmk3, pcmk4).
        let lab = try await GatewayLab(guests: 2, secondBridge: 2)
        let keyA = lab.keyPath
        let keyB = lab.fencegate.directory.file("cluster-b.key")
        #expect(try await lab.fencegate.run(["keygen", keyB]).status == 0)
        let guests = lab.lab.guests
        let configuration = lab.fencegate.directory.file("fencegate.toml")
        let text =
            Self.header
            + Self.gateway(
                key: keyA,
                address: "225.0.0.12",
                bridge: "br0",
                guests: [guests[0].ipv4, guests[1].ipv4],
                domains: ["pcmk1", "pcmk2"]
            )
            + Self.gateway(
                key: keyA,
                address: "ff05::3:1",
                bridge: "br0",
                guests: [guests[0].ipv6, guests[1].ipv6],
                domains: ["pcmk1", "pcmk2"]
            )
            + Self.gateway(
                key: keyB,
                address: "225.0.0.12",
                bridge: "br1",
                guests: [guests[2].ipv4, guests[3].ipv4],
                domains: ["pcmk3", "pcmk4"]
            )
        try text.write(toFile: configuration, atomically: true, encoding: .utf8)
        try await lab.startFencegate(configFile: configuration)
        let started = try String(contentsOfFile: lab.fencegate.directory.file("serve.out"), encoding: .utf8)
        #expect(
            started.contains(
                "; fence_xvm on 225.0.0.12:1229 via br0; fence_xvm on ff05::3:1:1229 via br0; fence_xvm on 225.0.0.12:1229 via br1"
            ),
            "\(started)"
        )

        // Each cluster fences its own nodes with its own key: A over IPv4 and IPv6, B on the other bridge.
        let offA = try await lab.fenceXVM(guest: 0, ["-H", "pcmk2", "-o", "off"], key: keyA)
        #expect(offA.status == 0, "\(offA.stdout)\(offA.stderr)")
        let statusA6 = try await lab.fenceXVM(
            guest: 1,
            ["-i", "ipv6", "-a", "ff05::3:1", "-H", "pcmk1", "-o", "status"],
            key: keyA
        )
        #expect(statusA6.status == 0, "\(statusA6.stdout)\(statusA6.stderr)")
        let offB = try await lab.fenceXVM(guest: 2, ["-H", "pcmk4", "-o", "off"], key: keyB)
        #expect(offB.status == 0, "\(offB.stdout)\(offB.stderr)")

        // B's guest cannot act on A's nodes with its own key: its gateway's groups do not list them.
        let across = try await lab.fenceXVM(guest: 2, ["-H", "pcmk1", "-o", "off"], key: keyB)
        #expect(across.status == 3 && across.stdout.contains("Permission denied"), "\(across.stdout)\(across.stderr)")
        // Nor with A's key from B's bridge, nor B's key from A's bridge: no gateway there holds it, so the
        // request is dropped and the client times out.
        let keyAOnB = try await lab.fenceXVM(guest: 3, ["-H", "pcmk1", "-o", "off", "-t", "2"], key: keyA)
        #expect(keyAOnB.status == 1 && keyAOnB.stdout.contains("Timed out waiting for response"), "\(keyAOnB.stdout)")
        let keyBOnA = try await lab.fenceXVM(guest: 0, ["-H", "pcmk3", "-o", "off", "-t", "2"], key: keyB)
        #expect(keyBOnA.status == 1 && keyBOnA.stdout.contains("Timed out waiting for response"), "\(keyBOnA.stdout)")
        try await lab.stopServer()

        // Every answered request is audited once (no two gateways answered one request), with its guest and
        // the power state it left; the dropped ones never reached the service.
        let rows = try await lab.rows()
        let summary = rows.map {
            [
                $0.action, $0.domainName ?? $0.target, $0.requester ?? "-", $0.result?.rawValue ?? "-",
                $0.powerState ?? "-",
            ]
            .joined(separator: " ")
        }
        #expect(
            summary == [
                "off pcmk2 \(guests[0].ipv4) success off", "status pcmk1 \(guests[1].ipv6) success on",
                "off pcmk4 \(guests[2].ipv4) success off", "off pcmk1 \(guests[2].ipv4) refused -",
            ],
            "\(summary)"
        )
        #expect(rows.allSatisfy { $0.source == "multicast" })
    }

    @Test(
        "one key on two bridges, one group and port: a request is heard by its own bridge's gateway only",
        arguments: ["225.0.0.12", "ff05::3:1"]
    )
    func eachGatewayHearsItsOwnBridge(group: String) async throws {
        let lab = try await GatewayLab(guests: 1, secondBridge: 1)
        let configuration = lab.fencegate.directory.file("fencegate.toml")
        let guests = lab.lab.guests
        let ipv6 = group.contains(":")
        try
            (Self.header
            + Self.gateway(
                key: lab.keyPath,
                address: group,
                bridge: "br0",
                guests: [ipv6 ? guests[0].ipv6 : guests[0].ipv4],
                domains: ["pcmk1"]
            )
            + Self.gateway(
                key: lab.keyPath,
                address: group,
                bridge: "br1",
                guests: [ipv6 ? guests[1].ipv6 : guests[1].ipv4],
                domains: ["pcmk3"]
            ))
            .write(toFile: configuration, atomically: true, encoding: .utf8)
        try await lab.startFencegate(configFile: configuration)

        // Linux would hand br0's datagram to br1's socket too (same group and port; for IPv6 whatever the
        // interface joined); both gateways hold the key, so both would call back. One call back, one row.
        let key = try HostileInputTests.key(lab)
        let answers: [UInt8?]
        if ipv6 {
            let address = SocketAddress(host: guests[0].ipv6, port: HostileInputTests.callbackPort)!
            let request = try FenceXVMRequest(
                operation: .status,
                domain: "pcmk1",
                address: address.bytes,
                port: HostileInputTests.callbackPort,
                sequenceNumber: .random(in: 1...999_999),
                family: 10
            ).signed(hashType: .sha256, key: key)
            answers = try await lab.lab.inNamespace(guests[0].namespace) {
                let listener = try HostileInputTests.listener(on: address)
                try Socket.multicastSenderIPv6(interface: "eth0")
                    .send(request.bytes, to: SocketAddress(host: group, port: 1229)!)
                var answers: [UInt8?] = []
                let end = ContinuousClock.now + .seconds(2)
                while ContinuousClock.now < end {
                    guard let (connection, _) = try listener.accept(timeout: end - .now) else { continue }
                    answers.append(
                        try FenceXVMClient.answerCallback(
                            on: connection,
                            auth: .sha256,
                            key: key,
                            timeout: .seconds(10)
                        )
                    )
                }
                return answers
            }
        } else {
            let request = try HostileInputTests.request(lab, .status, "pcmk1").signed(hashType: .sha256, key: key)
            answers = try await HostileInputTests.send(lab, [request.bytes], watch: .seconds(2), answeringWith: key)
        }
        #expect(answers.count == 1, "\(answers)")
        try await lab.stopServer()
        let rows = try await lab.rows()
        #expect(rows.map(\.action) == ["status"] && rows.first?.result == .success, "\(rows)")
    }
}
