import CTestSupport
import Foundation
import Synchronization

/// A test network that lives only in network namespaces this test creates: a "host" namespace with a Linux
/// bridge `br0` (standing in for virbr0, multicast snooping off) at 198.18.0.1/24 and fd00::1/64, and guest
/// namespaces on veth ports of that bridge at 198.18.0.(10+n) and fd00::(10+n) (optionally a second bridge,
/// `br1`, with guests of its own). Nothing touches the machine's own interfaces or routes.
///
/// Everything is deleted in `deinit`, also after a failed test; processes started with `start` are killed
/// (by PID) first. Needs root: see `NetworkLab.isAvailable`.
public final class NetworkLab: @unchecked Sendable {
    public struct Guest: Sendable {
        public let namespace: String
        public let ipv4: String
        public let ipv6: String
        /// `br0`, or `br1` for the guests of the second bridge.
        public let bridge: String
    }

    public let host: String
    public let guests: [Guest]
    public static let hostIPv4 = "198.18.0.1"
    public static let hostIPv6 = "fd00::1"
    private let processes = Mutex<[SpawnedProcess]>([])

    /// True when this process may create namespaces (it runs as root and has `ip`).
    public static var isAvailable: Bool {
        geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
            || geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/sbin/ip")
    }

    /// - Parameters:
    ///   - lastOctets: the guests' IPv4 addresses' last numbers (198.18.0.N); by default 11, 12, ….
    ///   - secondBridge: guests on a second bridge, `br1` (198.18.1.1/24, fd01::1/64), at 198.18.1.(10+n)
    ///     and fd01::(10+n); they follow the first bridge's guests in `guests`.
    public init(guests count: Int, lastOctets: [Int]? = nil, secondBridge: Int = 0) throws {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        host = "fgl-\(tag)-h"
        let octets = lastOctets ?? (1...count).map { 10 + $0 }
        guests =
            (1...count).map { index in
                let octet = octets[index - 1]
                return Guest(
                    namespace: "fgl-\(tag)-g\(index)",
                    ipv4: "198.18.0.\(octet)",
                    ipv6: "fd00::\(octet)",
                    bridge: "br0"
                )
            }
            + (0..<secondBridge).map { index in
                Guest(
                    namespace: "fgl-\(tag)-b\(index + 1)",
                    ipv4: "198.18.1.\(11 + index)",
                    ipv6: "fd01::\(11 + index)",
                    bridge: "br1"
                )
            }
        do {
            try build()
        } catch {
            destroy()
            throw error
        }
    }

    deinit {
        destroy()
    }

    private func build() throws {
        try Self.ip(["netns", "add", host])
        try Self.ip(["-n", host, "link", "set", "lo", "up"])
        try Self.ip(["-n", host, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])
        try Self.ip(["-n", host, "addr", "add", "\(Self.hostIPv4)/24", "dev", "br0"])
        try Self.ip(["-n", host, "addr", "add", "\(Self.hostIPv6)/64", "dev", "br0", "nodad"])
        try Self.ip(["-n", host, "link", "set", "br0", "up"])
        if guests.contains(where: { $0.bridge == "br1" }) {
            try Self.ip(["-n", host, "link", "add", "br1", "type", "bridge", "mcast_snooping", "0"])
            try Self.ip(["-n", host, "addr", "add", "198.18.1.1/24", "dev", "br1"])
            try Self.ip(["-n", host, "addr", "add", "fd01::1/64", "dev", "br1", "nodad"])
            try Self.ip(["-n", host, "link", "set", "br1", "up"])
        }
        for (index, guest) in guests.enumerated() {
            let port = "port\(index + 1)"
            try Self.ip(["netns", "add", guest.namespace])
            try Self.ip(["-n", guest.namespace, "link", "set", "lo", "up"])
            try Self.ip([
                "-n", host, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", guest.namespace,
            ])
            try Self.ip(["-n", host, "link", "set", port, "master", guest.bridge])
            try Self.ip(["-n", host, "link", "set", port, "up"])
            try Self.ip(["-n", guest.namespace, "addr", "add", "\(guest.ipv4)/24", "dev", "eth0"])
            try Self.ip(["-n", guest.namespace, "addr", "add", "\(guest.ipv6)/64", "dev", "eth0", "nodad"])
            try Self.ip(["-n", guest.namespace, "link", "set", "eth0", "up"])
        }
    }

    /// Kills the processes this lab started and deletes its namespaces. Safe to call twice.
    public func destroy() {
        for process in processes.withLock({ list in
            defer { list = [] }
            return list
        }) where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        for namespace in guests.map(\.namespace) + [host] {
            _ = try? Self.ip(["netns", "del", namespace], ignoringFailure: true)
        }
    }

    /// Runs `command` inside `namespace` to completion, with `input` on its standard input.
    public func run(in namespace: String, _ command: [String], input: String? = nil) async throws -> ProgramResult {
        try await runProgram(Self.ipPath, ["netns", "exec", namespace] + command, standardInput: input)
    }

    /// Starts `command` inside `namespace`; the lab kills it when destroyed. Output goes to the given files.
    public func start(
        in namespace: String,
        _ command: [String],
        stdout: String,
        stderr: String
    ) throws -> SpawnedProcess {
        let process = try SpawnedProcess(
            Self.ipPath,
            ["netns", "exec", namespace] + command,
            standardOutput: stdout,
            standardError: stderr
        )
        processes.withLock { $0.append(process) }
        return process
    }

    /// Runs `body` on a new thread that has entered `namespace`'s network namespace (setns), so the sockets it
    /// opens live there; the thread ends afterwards and is never reused. For tests that speak a protocol by
    /// hand from a guest.
    public func inNamespace<T: Sendable>(
        _ namespace: String,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                let error = fg_enter_network_namespace("/run/netns/\(namespace)")
                guard error == 0 else {
                    continuation.resume(
                        throwing: ConditionNeverMet(description: "cannot enter netns \(namespace): errno \(error)")
                    )
                    return
                }
                continuation.resume(with: Result { try body() })
            }
            thread.start()
        }
    }

    public static let ipPath =
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip"

    /// Runs `ip ARGUMENTS` to completion (posix_spawn, output to a file: a pipe read to its end also waits
    /// for any other process that inherited its write end).
    @discardableResult
    public static func ip(_ arguments: [String], ignoringFailure: Bool = false) throws -> String {
        let scratch = try TemporaryDirectory()
        let outputPath = scratch.file("ip.out")
        let pid = try spawnProgram(ipPath, arguments, standardOutput: outputPath, standardError: outputPath)
        let status = waitForExit(pid)
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        if status != 0 && !ignoringFailure {
            throw ConditionNeverMet(description: "ip \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }
}
