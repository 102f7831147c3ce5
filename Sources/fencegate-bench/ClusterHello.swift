import ArgumentParser
import Cluster
import FoundationEssentials

/// `fencegate-bench cluster-hello`: joins a Fencegate cluster's CPG group as a member that speaks another
/// protocol version (or holds other keys), says hello once, and stays for a while: what the members must
/// refuse, for the cluster lab.
struct ClusterHello: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Join a Fencegate cluster as a member speaking another protocol version; for tests."
    )

    @Option(help: "The CPG group.") var group: String
    @Option(help: "The protocol version to claim in the envelope.") var version: UInt16 = 2
    @Option(help: "Key fingerprints to announce (repeatable).") var fingerprint: [String] = []
    @Option(help: "Seconds to stay joined.") var seconds: Double = 10

    func run() async throws {
        let member = try await CPGGroup.join(name: group)
        var bytes = ClusterMessage.hello(Hello(keyFingerprints: fingerprint, hostName: "impostor")).encoded
        bytes[4] = UInt8(truncatingIfNeeded: version >> 8)
        bytes[5] = UInt8(truncatingIfNeeded: version)
        try await member.send(bytes, deadline: .now + .seconds(5))
        print("sent a hello claiming protocol \(version) as \(member.local)")
        try await Task.sleep(for: .seconds(seconds))
        member.leave()
    }
}
