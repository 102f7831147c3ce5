import FenceAPI
import FenceCore
import FoundationEssentials
import Glibc
import Logging
import MulticastGateway
import Store

/// What `doctor` checks: the same settings `serve` would run with.
struct DoctorSubject {
    var uri: String
    var databasePath: String
    var http: ListenAddress
    var gateway: GatewayConfiguration?
    var keyFile: String
}

/// The checks of `fencegate doctor`, each returning its findings. They read and probe; they change nothing
/// (the audit database is opened only if it exists).
enum DoctorChecks {
    /// The key file: exists, holds enough bytes, is private; its fingerprint to compare with the guests'.
    static func key(_ subject: DoctorSubject) -> [Finding] {
        guard let gateway = subject.gateway else { return [] }
        let needed = gateway.minimumHash != .none || gateway.auth != .none
        let path = subject.keyFile
        let check = "key file \(path)"
        let contents: KeyFile.Contents
        do {
            contents = try KeyFile.read(at: path)
        } catch {
            let level: Finding.Level = needed ? .fail : .warn
            return [
                Finding(
                    level: level,
                    check: check,
                    detail: "\(error)",
                    fix: FileManager.default.fileExists(atPath: path)
                        ? "chown root:root \(path) && chmod 600 \(path)"
                        : "fencegate keygen \(path)   # then copy it to every guest (same path), see README"
                )
            ]
        }
        let used = contents.key.prefix(GatewayConfiguration.maximumKeyBytes)
        let fingerprint = KeyFile.fingerprint(of: Array(used))
        var findings: [Finding] = []
        if used.count < 32 {
            findings.append(
                .warn(
                    check,
                    "only \(used.count) bytes: a short key can be guessed",
                    fix: "fencegate keygen --force \(path)   # 4096 random bytes; copy it to every guest"
                )
            )
        }
        if let warning = contents.warning {
            findings.append(.warn(check, warning, fix: "chmod 600 \(path)"))
        }
        findings.append(
            .ok(
                check,
                "\(used.count) bytes used, fingerprint \(fingerprint); on each guest, "
                    + "`head -c 4096 \(path) | sha256sum | cut -c1-32` must print the same"
            )
        )
        return findings
    }

    /// The multicast interface: exists; if a Linux bridge snoops IGMP without a querier, the host stops
    /// receiving the guests' requests once the group membership times out (about 260 s after the last
    /// report), the classic "fence_xvm works, then times out" problem.
    static func bridge(_ subject: DoctorSubject) -> [Finding] {
        guard let multicast = subject.gateway?.multicast else { return [] }
        guard let interface = multicast.interface else {
            return [
                .warn(
                    "multicast interface",
                    "none given: the group is joined on the default route's interface",
                    fix:
                        "give the guests' bridge: --multicast-interface virbr0 (fence_virt.conf: interface = \"virbr0\";)"
                )
            ]
        }
        let base = "/sys/class/net/\(interface)"
        guard FileManager.default.fileExists(atPath: base) else {
            return [
                .fail(
                    "interface \(interface)",
                    "does not exist on this host",
                    fix:
                        "name an existing interface (ip link); for libvirt's default network it is virbr0 (virsh net-start default)"
                )
            ]
        }
        guard FileManager.default.fileExists(atPath: base + "/bridge") else {
            return [.ok("interface \(interface)", "exists (not a bridge: no IGMP snooping to check)")]
        }
        let snooping = readNumber(base + "/bridge/multicast_snooping")
        let querier = readNumber(base + "/bridge/multicast_querier")
        if snooping == 1 && querier != 1 {
            return [
                .fail(
                    "bridge \(interface)",
                    "IGMP snooping is on and no querier runs (multicast_snooping=1, multicast_querier=\(querier.map(String.init) ?? "?")): "
                        + "the bridge stops passing the guests' fence_xvm requests to the host a few minutes after start",
                    fix: """
                        echo 1 > \(base)/bridge/multicast_querier   # or: echo 0 > \(base)/bridge/multicast_snooping
                        to keep it after reboots: ip link set \(interface) type bridge mcast_querier 1 in the network's start-up \
                        (a libvirt network hook, NetworkManager: nmcli connection modify \(interface) bridge.multicast-querier yes)
                        """
                )
            ]
        }
        let state = snooping == 1 ? "IGMP snooping on, querier on" : "IGMP snooping off (multicast is flooded)"
        return [.ok("bridge \(interface)", state)]
    }

    /// Ports `serve` would bind: free, or held by this Fencegate; another fence_virtd is the usual culprit.
    static func ports(_ subject: DoctorSubject) -> [Finding] {
        var wanted: [(UInt16, PortOwners.Transport, String)] = [(subject.http.port, .tcp, "HTTP API")]
        if let multicast = subject.gateway?.multicast { wanted.append((multicast.port, .udp, "fence_xvm multicast")) }
        if let tcp = subject.gateway?.tcp { wanted.append((tcp.port, .tcp, "fence_virt tcp")) }
        return wanted.map { port, transport, role in
            let check = "port \(port)/\(transport.rawValue) (\(role))"
            guard port != 0 else { return .ok(check, "any free port") }
            let owners = PortOwners.owners(of: port, transport)
            guard !owners.isEmpty else { return .ok(check, "free") }
            let names = owners.map { $0.pid == 0 ? $0.name : "\($0.name) (pid \($0.pid))" }.joined(separator: ", ")
            if owners.allSatisfy({ $0.name == "fencegate" }) {
                return .ok(check, "held by \(names): Fencegate is running")
            }
            let fix =
                owners.contains { $0.name == "fence_virtd" }
                ? "systemctl disable --now fence_virtd   # Fencegate replaces it (same key, same guests)"
                : "stop \(names), or choose another port"
            return .fail(check, "in use by \(names)", fix: fix)
        }
    }

    /// libvirt answers at the URI; the domains it has.
    static func libvirt(_ subject: DoctorSubject) -> [Finding] {
        var logger = Logger(label: "doctor")
        logger.logLevel = .critical
        let hypervisor = LibvirtHypervisor(uri: subject.uri, logger: logger, maximumConnections: 1)
        var findings: [Finding]
        do {
            let domains = try hypervisor.domains()
            let running = domains.filter { $0.state == .running }.count
            findings = [.ok("libvirt \(subject.uri)", "reachable, \(domains.count) domains (\(running) running)")]
        } catch {
            findings = [
                .fail(
                    "libvirt \(subject.uri)",
                    "\(error)",
                    fix:
                        "start libvirt (systemctl enable --now libvirtd, or virtqemud.socket) and check the URI (virsh -c '\(subject.uri)' list --all)"
                )
            ]
        }
        if subject.uri.hasPrefix("qemu"), let access = FileAccess(path: "/dev/kvm"), access.permissions & 0o060 != 0o060
        {
            findings.append(
                .warn(
                    "/dev/kvm",
                    "mode \(access.octal): the kvm group cannot use it, so libvirt re-probes QEMU on every define and start (seconds each)",
                    fix:
                        "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm   # what Debian's udev rule sets; find what changed it"
                )
            )
        }
        return findings
    }

    /// The audit database can be written (or its directory, if it is yet to be created).
    static func database(_ subject: DoctorSubject) async -> [Finding] {
        let path = subject.databasePath
        let check = "audit database \(path)"
        guard FileManager.default.fileExists(atPath: path) else {
            var directory = path.parentPath
            while !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
                directory = directory.parentPath
            }
            if access(directory.isEmpty ? "." : directory, W_OK) == 0 {
                return [.ok(check, "not created yet; serve creates it (mode 0600)")]
            }
            return [
                .fail(
                    check,
                    "cannot be created: \(directory) is not writable",
                    fix: "run as root, or give --database PATH"
                )
            ]
        }
        var logger = Logger(label: "doctor")
        logger.logLevel = .critical
        do {
            let store = try await AuditStore.open(path: path, logger: logger)
            try await store.checkWritable()
            guard let free = store.freeBytes() else { return [.ok(check, "writable")] }
            let reserve = AuditSpaceReserve()
            guard free >= reserve.highWater else {
                return [
                    .warn(
                        check,
                        "writable, but only \(free >> 20) MiB free on its filesystem",
                        fix:
                            "free space: below \(reserve.lowWater >> 20) MiB, serve fences on the \(reserve.bytes >> 20) MiB "
                            + "kept for fences and records no reads or refusals; once that is used up, it refuses fences"
                    )
                ]
            }
            return [.ok(check, "writable, \(free >> 20) MiB free on its filesystem")]
        } catch {
            return [
                .fail(
                    check,
                    "\(error)",
                    fix: "free space or fix the filesystem (it may have turned read-only), or stop what holds its lock"
                )
            ]
        }
    }

    /// Firewall hints: an nftables input chain whose policy drops must accept the guests' requests.
    static func firewall(_ subject: DoctorSubject) async -> [Finding] {
        guard let gateway = subject.gateway else { return [] }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft") else {
            return [.ok("firewall", "nftables not in use here (check any other firewall yourself)")]
        }
        // Once more after a failure, so that one transient failure is not reported as a finding.
        var listing = await runCommand("/usr/sbin/nft", ["list", "ruleset"])
        if case .failure = listing {
            try? await Task.sleep(for: .milliseconds(200))
            listing = await runCommand("/usr/sbin/nft", ["list", "ruleset"])
        }
        let ruleset: String
        switch listing {
        case .success(let output): ruleset = output
        case .failure(let failure):
            return [
                .warn(
                    "firewall",
                    "could not read the nftables ruleset: \(failure.reason)",
                    fix: "run `nft list ruleset` and check that the gateway's ports are accepted"
                )
            ]
        }
        var wanted: [(String, UInt16, String)] = []
        if let multicast = gateway.multicast { wanted.append(("udp", multicast.port, "fence_xvm requests")) }
        if let tcp = gateway.tcp { wanted.append(("tcp", tcp.port, "fence_virt -T")) }
        let chains = NftablesInputChains(ruleset).dropping
        guard !chains.isEmpty else { return [.ok("firewall", "no nftables input chain drops by default")] }
        var findings: [Finding] = []
        for chain in chains {
            let missing = wanted.filter { protocolName, port, _ in !chain.accepts(protocolName, port: port) }
            let name = "\(chain.family) \(chain.table) \(chain.name)"
            guard !missing.isEmpty else {
                findings.append(
                    .ok("firewall", "nftables chain \(name) drops by default and accepts the gateway's ports")
                )
                continue
            }
            let via = gateway.multicast?.interface.map { "iifname \"\($0)\" " } ?? ""
            let rules = missing.map { protocolName, port, role in
                "nft add rule \(name) \(via)\(protocolName) dport \(port) accept   # \(role)"
            }
            findings.append(
                .warn(
                    "firewall",
                    "nftables chain \(name) drops by default and does not accept \(missing.map { "\($0.0) \($0.1)" }.joined(separator: ", "))",
                    fix: (rules + [
                        "the call back to the guests (TCP to their port) must be allowed out, and its replies in"
                    ])
                    .joined(separator: "\n")
                )
            )
        }
        return findings
    }

    private static func readNumber(_ path: String) -> Int? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap {
            Int($0.trimmingWhitespace)
        }
    }

    /// Why a program run by `runCommand` gave no output.
    struct CommandFailure: Error {
        let reason: String
    }

    /// Runs a program and returns its standard output; a failure says why (its exit status and standard
    /// error, or that it took longer than 10 s).
    ///
    /// The output goes to temporary files, not pipes: reading a pipe to its end waits for every copy of
    /// its write end, and a copy inherited by another process left doctor waiting although the program had
    /// exited (seen in the test suite, with `nft`).
    private static func runCommand(_ path: String, _ arguments: [String]) async -> Result<String, CommandFailure> {
        var template = Array((FileManager.default.temporaryDirectory.path + "/fencegate-doctor-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else {
            return .failure(
                CommandFailure(reason: "cannot create a temporary directory: \(String(cString: strerror(errno)))")
            )
        }
        let directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outputPath = directory + "/stdout"
        let errorPath = directory + "/stderr"
        let ending: ChildProcess.Ending
        do {
            ending = try await ChildProcess.run(
                path,
                arguments,
                outputPath: outputPath,
                errorPath: errorPath,
                timeout: .seconds(10)
            )
        } catch {
            return .failure(CommandFailure(reason: "\(error)"))
        }
        let errors = ((try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
            .trimmingWhitespace.prefix(200)
        switch ending {
        case .exited(0):
            guard let text = try? String(contentsOfFile: outputPath, encoding: .utf8) else {
                return .failure(CommandFailure(reason: "cannot read what \(path) printed"))
            }
            return .success(text)
        case .exited(let status):
            return .failure(CommandFailure(reason: "\(path) exited with status \(status): \(errors)"))
        case .killedBySignal(let signal):
            return .failure(CommandFailure(reason: "\(path) was killed by signal \(signal): \(errors)"))
        case .timedOut:
            return .failure(CommandFailure(reason: "\(path) took longer than 10 s: \(errors)"))
        }
    }
}
