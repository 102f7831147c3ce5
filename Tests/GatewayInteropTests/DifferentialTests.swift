import Foundation
import Store
import TestSupport
import Testing

@Suite("Differential: the gateway answers exactly as fence_virtd does", requiresRoot, .serialized)
struct DifferentialTests {
    /// One fence_xvm invocation and what the client printed and returned.
    struct Answer: Equatable, CustomStringConvertible {
        let arguments: [String]
        let status: Int32
        let output: String

        var description: String { "\(arguments.joined(separator: " ")) → \(status) \(output.debugDescription)" }
    }

    /// Runs `sequence` from guest 0 (and `otherGuest` from guest 1) against whichever server the lab runs.
    static func answers(_ lab: GatewayLab, _ sequence: [[String]], otherGuest: [[String]] = []) async throws -> [Answer]
    {
        var answers: [Answer] = []
        for (guest, list) in [(0, sequence), (1, otherGuest)] {
            for arguments in list {
                let result = try await lab.fenceXVM(guest: guest, arguments + ["-t", "3"])
                answers.append(
                    Answer(arguments: ["guest\(guest)"] + arguments, status: result.status, output: result.stdout)
                )
            }
        }
        return answers
    }

    static let sequence: [[String]] = [
        ["-H", "pcmk1", "-o", "status"], ["-H", "stopped1", "-o", "status"], ["-H", "paused1", "-o", "status"],
        ["-H", "ghost", "-o", "status"], ["-H", "pcmk1", "-o", "off"], ["-H", "pcmk1", "-o", "status"],
        ["-H", "pcmk1", "-o", "off"], ["-H", "pcmk1", "-o", "on"], ["-H", "pcmk1", "-o", "on"],
        ["-H", "ghost", "-o", "off"], ["-H", "ghost", "-o", "on"], ["-H", "ghost", "-o", "reboot"],
        ["-H", "pcmk2", "-o", "reboot"], ["-H", "pcmk2", "-o", "status"], ["-H", "stopped1", "-o", "reboot"],
        ["-H", "stopped1", "-o", "status"], ["-H", "33333333-3333-4333-8333-333333333333", "-o", "off"],
        ["-u", "-H", "33333333-3333-4333-8333-333333333333".uppercased(), "-o", "status"],
        ["-H", "transient1", "-o", "reboot"], ["-H", "transient1", "-o", "status"], ["-H", "transient1", "-o", "off"],
        ["-H", "transient1", "-o", "status"], ["-H", "transient1", "-o", "on"], ["-o", "monitor"],
        ["-H", "pcmk4", "-o", "null"], ["-o", "list"], ["-o", "list-status"],
    ]

    @Test("the same sequence of requests gives the same exit codes and output")
    func sameAnswers() async throws {
        let lab = try await GatewayLab(guests: 1)
        try await lab.startFenceVirtd()
        let reference = try await Self.answers(lab, Self.sequence)
        try await lab.stopServer()
        try await lab.startFencegate()
        let ours = try await Self.answers(lab, Self.sequence)
        try await lab.stopServer()
        #expect(ours.count == reference.count)
        for (mine, theirs) in zip(ours, reference) {
            #expect(mine == theirs, "fencegate: \(mine)\nfence_virtd: \(theirs)")
        }
        #expect(try await lab.rows().count == Self.sequence.count)
    }

    @Test("with groups, the same permissions, denials and lists")
    func sameGroups() async throws {
        let lab = try await GatewayLab(guests: 2)
        let guest0 = lab.guestIPv4(0)
        try await lab.startFenceVirtd(
            groups: """
                groups {
                    group {
                        name = "cluster1";
                        ip = "\(guest0)";
                        uuid = "pcmk1";
                        uuid = "22222222-2222-4222-8222-222222222222";
                    }
                }
                """
        )
        let sequence: [[String]] = [
            ["-H", "pcmk1", "-o", "status"], ["-H", "pcmk2", "-o", "status"],
            ["-H", "22222222-2222-4222-8222-222222222222", "-o", "status"], ["-H", "pcmk3", "-o", "off"],
            ["-H", "pcmk1", "-o", "off"], ["-o", "list"], ["-o", "monitor"],
        ]
        let other: [[String]] = [["-H", "pcmk1", "-o", "off"], ["-o", "list"], ["-H", "pcmk2", "-o", "null"]]
        let reference = try await Self.answers(lab, sequence, otherGuest: other)
        try await lab.stopServer()
        try await lab.startFencegate(["--group", "ip=\(guest0);domain=pcmk1,22222222-2222-4222-8222-222222222222"])
        let ours = try await Self.answers(lab, sequence, otherGuest: other)
        try await lab.stopServer()
        for (mine, theirs) in zip(ours, reference) {
            #expect(mine == theirs, "fencegate: \(mine)\nfence_virtd: \(theirs)")
        }
        #expect(ours.count == reference.count)
    }

    @Test("drop-in: fencegate serve --fence-virt-conf runs from fence_virtd's own file, with the same answers")
    func dropIn() async throws {
        let lab = try await GatewayLab(guests: 2)
        let guest0 = lab.guestIPv4(0)
        let configuration = try lab.writeFenceVirtConf(
            groups: """
                groups {
                    group {
                        name = "cluster1";
                        ip = "\(guest0)";
                        uuid = "pcmk1";
                        uuid = "pcmk2";
                        uuid = "33333333-3333-4333-8333-333333333333";
                    }
                }
                """
        )
        let sequence: [[String]] = [
            ["-H", "pcmk1", "-o", "status"], ["-H", "pcmk4", "-o", "status"], ["-H", "pcmk2", "-o", "reboot"],
            ["-H", "33333333-3333-4333-8333-333333333333", "-o", "off"], ["-H", "pcmk4", "-o", "off"],
            ["-o", "list"], ["-o", "monitor"], ["-H", "pcmk1", "-o", "off"], ["-H", "pcmk1", "-o", "status"],
        ]
        let other: [[String]] = [["-H", "pcmk2", "-o", "off"], ["-o", "list"]]
        try await lab.startFenceVirtd(configuration: configuration)
        let reference = try await Self.answers(lab, sequence, otherGuest: other)
        try await lab.stopServer()
        try await lab.startFencegate(fenceVirtConf: configuration)
        let ours = try await Self.answers(lab, sequence, otherGuest: other)
        try await lab.stopServer()
        #expect(ours.count == reference.count)
        for (mine, theirs) in zip(ours, reference) {
            #expect(mine == theirs, "fencegate: \(mine)\nfence_virtd: \(theirs)")
        }
        // The same file converted once (`config import`) into Fencegate's own configuration gives the same.
        let imported = try await lab.fencegate.run(["config", "import", configuration])
        #expect(imported.status == 0, "\(imported.stderr)")
        let toml = lab.fencegate.directory.file("fencegate.toml")
        try (imported.stdout + "[http]\nlisten = \"127.0.0.1:0\"\n").write(
            toFile: toml,
            atomically: true,
            encoding: .utf8
        )
        try await lab.startFencegate(configFile: toml)
        let fromImport = try await Self.answers(lab, sequence, otherGuest: other)
        try await lab.stopServer()
        #expect(fromImport == reference, "after config import:\n\(fromImport)\nfence_virtd:\n\(reference)")
        // Run by the service: audited, from the guest that asked.
        let offs = try await lab.rows().filter { $0.action == "off" && $0.result == .success }
        #expect(Set(offs.compactMap(\.domainName)) == ["pcmk3", "pcmk1"], "\(offs)")
        #expect(offs.count == 4, "two runs of Fencegate, two offs each: \(offs)")
        #expect(offs.allSatisfy { $0.source == "multicast" && $0.requester == guest0 })
    }
}
