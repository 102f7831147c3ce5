import Foundation
import Store
import TestSupport
import Testing

@Suite("Unchanged fence_xvm and fence_virt fence through the gateway", requiresRoot)
struct FenceXVMInteropTests {
    @Test("every operation from a guest, IPv4, command-line form: exit codes, output, audit rows")
    func operations() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate()
        let cases: [([String], Int32, String)] = [
            (["-H", "pcmk1", "-o", "status"], 0, "Status: ON\n"),
            (["-H", "stopped1", "-o", "status"], 2, "Status: OFF\n"),
            (["-H", "ghost", "-o", "status"], 2, "Status: OFF\n"),
            (["-H", "pcmk1", "-o", "off"], 0, ""),
            (["-H", "pcmk1", "-o", "status"], 2, "Status: OFF\n"),
            (["-H", "pcmk1", "-o", "off"], 0, ""),
            (["-H", "pcmk1", "-o", "on"], 0, ""),
            (["-H", "ghost", "-o", "off"], 1, "Operation failed\n"),
            (["-H", "pcmk2", "-o", "reboot"], 0, ""),
            (["-H", "stopped1", "-o", "reboot"], 0, ""),
            (["-H", "22222222-2222-4222-8222-222222222222".uppercased(), "-o", "status"], 0, "Status: ON\n"),
            (["-o", "monitor"], 0, ""),
            (["-H", "pcmk1", "-o", "null"], 1, "Operation failed\n"),
        ]
        for (arguments, status, output) in cases {
            let result = try await lab.fenceXVM(arguments)
            #expect(result.status == status, "\(arguments): \(result.stdout)\(result.stderr)")
            #expect(result.stdout == output, "\(arguments)")
        }
        #expect(try await lab.fenceXVM(["-H", "stopped1", "-o", "status"]).status == 2)  // reboot left it off

        let list = try await lab.fenceXVM(["-o", "list"])
        #expect(list.status == 0)
        let lines = list.stdout.split(separator: "\n")
        #expect(lines.count == 9)
        #expect(lines.contains("pcmk1                            11111111-1111-4111-8111-111111111111 on"))
        #expect(lines.contains("stopped1                         77777777-7777-4777-8777-777777777777 off"))
        #expect(try await lab.fenceXVM(["-o", "list-status"]).stdout == list.stdout)

        let rows = try await lab.rows()
        #expect(
            rows.map(\.action) == [
                "status", "status", "status", "off", "status", "off", "on", "off", "reboot", "reboot", "status",
                "monitor", "null", "status", "list", "list",
            ]
        )
        #expect(
            rows.allSatisfy {
                $0.source == "multicast" && $0.requester == lab.guestIPv4(0) && $0.clientAddress == lab.guestIPv4(0)
            }
        )
        #expect(rows.filter { $0.result == .failure }.map(\.target) == ["ghost", "ghost", "pcmk1"])
        try await lab.stopServer()
    }

    @Test("Pacemaker's stdin form (name=value lines) works, including aliases and ignored names")
    func stdinForm() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate()
        let off = try await lab.fenceXVMStdin([
            "# written by stonith-ng", "action=off", "port=pcmk5", "nodename=node5", "multicast_address=225.0.0.12",
            "hash=sha256", "auth=sha256", "timeout=5",
        ])
        #expect(off.status == 0, "\(off.stdout)\(off.stderr)")
        let status = try await lab.fenceXVMStdin(["action=status", "domain=pcmk5", "timeout=5"])
        #expect(status.status == 2)
        #expect(status.stdout == "Status: OFF\n")
        let reboot = try await lab.fenceXVMStdin(["option=reboot", "plug=pcmk5", "timeout=5"])
        #expect(reboot.status == 0)
        let rows = try await lab.rows()
        #expect(rows.map(\.action) == ["off", "status", "reboot"])
        #expect(rows.allSatisfy { $0.domainName == "pcmk5" })
    }

    @Test("IPv6: ff05::3:1 from a guest with an fd00:: address")
    func ipv6() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate(["--multicast-address", "ff05::3:1"])
        let status = try await lab.fenceXVM(["-i", "ipv6", "-H", "pcmk1", "-o", "status"])
        #expect(status.status == 0, "\(status.stdout)\(status.stderr)")
        let off = try await lab.fenceXVM(["-a", "ff05::3:1", "-H", "pcmk1", "-o", "off"])
        #expect(off.status == 0)
        let rows = try await lab.rows()
        #expect(rows.count == 2)
        #expect(rows.allSatisfy { $0.requester == lab.lab.guests[0].ipv6 })
    }

    @Test("every packet hash with every auth algorithm", arguments: ["none", "sha1", "sha256", "sha512"])
    func hashAndAuth(auth: String) async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate(["--hash", "none", "--auth", auth])
        for hash in ["none", "sha1", "sha256", "sha512"] {
            let result = try await lab.fenceXVM(["-c", hash, "-C", auth, "-H", "pcmk1", "-o", "status"])
            #expect(result.status == 0, "hash \(hash) auth \(auth): \(result.stdout)")
        }
        #expect(try await lab.rows().count == 4)
    }

    @Test("a hash weaker than the minimum, or a wrong key, is dropped silently: the client times out, nothing runs")
    func droppedRequests() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate(["--hash", "sha256"])
        let otherKey = lab.fencegate.directory.file("other.key")
        #expect(try await lab.fencegate.run(["keygen", otherKey]).status == 0)
        for (arguments, key) in [
            (["-c", "sha1"], nil), (["-c", "none"], nil), (["-c", "sha256"], otherKey),
        ] as [([String], String?)] {
            let result = try await lab.fenceXVM(
                arguments + ["-H", "pcmk1", "-o", "off", "-t", "2", "-r", "10"],
                key: key
            )
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stdout.contains("Timed out waiting for response"), "\(arguments): \(result.stdout)")
        }
        // A stronger hash than the minimum is accepted.
        #expect(try await lab.fenceXVM(["-c", "sha512", "-H", "pcmk1", "-o", "status"]).status == 0)
        #expect(try await lab.rows().map(\.action) == ["status"])
        #expect(try await lab.fenceXVM(["-H", "pcmk1", "-o", "status"]).stdout == "Status: ON\n")
    }

    @Test("an auth algorithm that differs from the gateway's fails the challenge; nothing runs")
    func wrongAuth() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate(["--auth", "sha256"])
        let result = try await lab.fenceXVM(["-C", "sha1", "-H", "pcmk1", "-o", "off", "-t", "3"])
        #expect(result.status == 1)
        #expect(result.stdout.contains("Invalid response to challenge"), "\(result.stdout)")
        #expect(try await lab.rows().isEmpty)
        #expect(try await lab.fenceXVM(["-H", "pcmk1", "-o", "status"]).status == 0)
    }

    @Test("groups allow and deny by requester and domain; denials answer 3 and are audited as refused")
    func groups() async throws {
        let lab = try await GatewayLab(guests: 2)
        try await lab.startFencegate(["--group", "ip=\(lab.guestIPv4(0));domain=pcmk1,pcmk2"])
        #expect(try await lab.fenceXVM(guest: 0, ["-H", "pcmk1", "-o", "off"]).status == 0)
        let denied = try await lab.fenceXVM(guest: 0, ["-H", "pcmk3", "-o", "off"])
        #expect(denied.status == 3)
        #expect(denied.stdout == "Permission denied\n")
        #expect(try await lab.fenceXVM(guest: 1, ["-H", "pcmk2", "-o", "off"]).status == 3)
        let list = try await lab.fenceXVM(guest: 0, ["-o", "list"])
        #expect(list.stdout.split(separator: "\n").map { $0.prefix(5) } == ["pcmk1", "pcmk2"])
        #expect(try await lab.fenceXVM(guest: 1, ["-o", "list"]).stdout == "")
        #expect(try await lab.fenceXVM(guest: 1, ["-o", "monitor"]).status == 0)  // never checked

        let rows = try await lab.rows()
        #expect(rows.map(\.result) == [.success, .refused, .refused, .success, .success, .success])
        #expect(rows[1].requester == lab.guestIPv4(0))
        #expect(rows[2].requester == lab.guestIPv4(1))
        #expect(try await lab.fencegate.run(["status", "pcmk2", "--uri", Fixtures.clusterURI]).status == 0)
    }

    @Test("several guests at once, each on its own domain")
    func severalGuests() async throws {
        let lab = try await GatewayLab(guests: 4)
        try await lab.startFencegate()
        let operations = [("pcmk1", "off"), ("pcmk2", "reboot"), ("pcmk3", "off"), ("pcmk4", "status")]
        let results = try await withThrowingTaskGroup(of: (Int, ProgramResult).self) { group in
            for (index, (domain, action)) in operations.enumerated() {
                group.addTask { (index, try await lab.fenceXVM(guest: index, ["-H", domain, "-o", action])) }
            }
            return try await group.reduce(into: [Int: ProgramResult]()) { $0[$1.0] = $1.1 }
        }
        for index in operations.indices {
            #expect(results[index]?.status == 0, "\(operations[index]): \(results[index]?.stdout ?? "")")
        }
        let rows = try await lab.rows()
        #expect(Set(rows.compactMap(\.requester)) == Set((0..<4).map(lab.guestIPv4)))
        #expect(rows.count == 4)
        #expect(rows.allSatisfy { $0.result == .success })
    }

    @Test("fence_xvm closes first, so the call backs' TIME_WAIT states stay in the guest, not on the host")
    func clientClosesFirst() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate()
        // A status answered at once, one answered off, and changes (answered after the service's operation).
        for (domain, action, exit) in [("pcmk1", "status", 0), ("stopped1", "status", 2), ("pcmk1", "off", 0)]
            + [("pcmk1", "on", 0)] as [(String, String, Int32)]
        {
            let result = try await lab.fenceXVM(["-H", domain, "-o", action])
            #expect(result.status == exit, "\(action) \(domain): \(result.stdout)\(result.stderr)")
        }
        func timeWaits(in namespace: String) async throws -> [Substring] {
            let listing = try await lab.lab.run(in: namespace, ["ss", "-tanH", "state", "time-wait"])
            return listing.stdout.split(separator: "\n").filter { $0.contains(":1229") }
        }
        // Every call back went to the guest's port 1229: a side that closes first keeps its TIME_WAIT for a
        // minute, and on the host each one is searched through when the next call back picks its port.
        // The guest's last socket turns to TIME_WAIT once the host has closed its side, a moment after fence_xvm
        // exits.
        try await waitUntil("the guest holds the four TIME_WAIT states", limit: .seconds(5)) {
            try await timeWaits(in: lab.lab.guests[0].namespace).count == 4
        }
        let onHost = try await timeWaits(in: lab.lab.host)
        #expect(onHost.isEmpty, "\(onHost)")
    }

    @Test("fence_virt -T over TCP, from the host and from a guest")
    func tcp() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFencegate(["--tcp-listen", "\(NetworkLab.hostIPv4)"], multicast: false)
        let fromGuest = try await lab.lab.run(
            in: lab.lab.guests[0].namespace,
            [
                "/usr/sbin/fence_virt", "-T", NetworkLab.hostIPv4, "-k", lab.keyPath, "-H", "pcmk2", "-o", "off", "-t",
                "5",
            ]
        )
        #expect(fromGuest.status == 0, "\(fromGuest.stdout)\(fromGuest.stderr)")
        let status = try await lab.lab.run(
            in: lab.lab.host,
            [
                "/usr/sbin/fence_virt", "-T", NetworkLab.hostIPv4, "-k", lab.keyPath, "-H", "pcmk2", "-o", "status",
                "-t", "5",
            ]
        )
        #expect(status.status == 2)
        #expect(status.stdout == "Status: OFF\n")
        let rows = try await lab.rows()
        #expect(rows.map(\.source) == ["tcp", "tcp"])
        #expect(rows.map(\.requester) == [lab.guestIPv4(0), NetworkLab.hostIPv4])
    }
}
