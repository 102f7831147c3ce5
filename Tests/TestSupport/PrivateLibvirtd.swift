import FenceCore
import Foundation

/// A real libvirtd (Debian's libvirt-daemon) started by a test, on a socket of its own.
///
/// It runs as an unprivileged session daemon (as `nobody` when the tests run as root, as CI does), with its
/// home and runtime directories in a fresh directory, so it touches neither a system libvirtd nor the host's
/// state. Clients reach it with `uri`: by default `test+unix:///default?socket=…`, the daemon's shared test
/// world (the domain `test`, running), which starts afresh each time the daemon does; with `driver: .qemu`,
/// `qemu+unix:///session?socket=…`, where domains are real QEMU processes (TCG) owned by that user.
public final class PrivateLibvirtd: @unchecked Sendable {
    public static let executable = "/usr/sbin/libvirtd"

    /// The libvirt driver clients of this daemon use.
    public enum Driver: Sendable {
        /// libvirt's test driver: instant, state in memory.
        case test
        /// The QEMU driver in session mode: real QEMU processes (libvirt-daemon-driver-qemu, qemu-system-x86).
        case qemu
    }

    public let driver: Driver

    /// The daemon's home and runtime directories live here; removed with it.
    private let directory: TemporaryDirectory
    private var root: String { directory.path }
    private let daemon = DaemonProcess()

    /// Where the daemon logs each call it receives, with `logsCalls`.
    private var callLogPath: String { root + "/home/calls.log" }
    /// Whether the daemon logs the calls it receives (`calls`).
    public let logsCalls: Bool

    /// The socket the daemon listens on.
    public var socketPath: String { root + "/run/libvirt/libvirt-sock" }
    /// The daemon's log (warnings and errors), in its home directory, which it may write.
    public var logPath: String { root + "/home/libvirtd.log" }
    /// The daemon's shared test-driver world, or its QEMU session, over its socket.
    public var uri: String {
        switch driver {
        case .test: "test+unix:///default?socket=\(socketPath)"
        case .qemu: "qemu+unix:///session?socket=\(socketPath)"
        }
    }

    /// Starts the daemon and waits until it answers.
    /// - Parameter logsCalls: log every call clients make (libvirt's `rpc.netserverclient` messages), for `calls`.
    public init(driver: Driver = .test, logsCalls: Bool = false) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw ConditionNeverMet(
                description:
                    "\(Self.executable) is missing: install libvirt-daemon (scripts/install-dependencies --tests)"
            )
        }
        self.driver = driver
        self.logsCalls = logsCalls
        directory = try TemporaryDirectory()
        chmod(directory.path, 0o755)  // nobody must reach its subdirectories
        for directory in ["home", "run"] {
            try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: false)
            if geteuid() == 0 { chown(root + "/" + directory, Self.nobody.uid, Self.nobody.gid) }
        }
        try await start()
    }

    deinit {
        if let pid = daemon.runningPID {
            kill(pid, SIGKILL)
            while !daemon.hasExited { usleep(10_000) }
        }
        // What the daemon started on its own and would outlive it: QEMU processes of domains still running, and
        // the session's virtlogd. Each is found by the pid file it wrote in this daemon's runtime directory, and
        // killed only if that PID still runs the program that wrote it.
        let qemuRun = root + "/run/libvirt/qemu/run"
        let pidFiles =
            ((try? FileManager.default.contentsOfDirectory(atPath: qemuRun)) ?? [])
            .filter { $0.hasSuffix(".pid") }.map { (qemuRun + "/" + $0, "qemu-system") }
            + [(root + "/run/libvirt/virtlogd.pid", "virtlogd")]
        for (path, program) in pidFiles {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
                let commandLine = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
                commandLine.contains(program)
            else { continue }
            kill(pid, SIGKILL)
        }
    }

    /// Starts the daemon (again) and waits until its socket accepts a libvirt client.
    public func start() async throws {
        let environment = [
            "HOME": root + "/home", "XDG_RUNTIME_DIR": root + "/run", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LIBVIRT_LOG_OUTPUTS": "3:file:\(logPath)" + (logsCalls ? " 2:file:\(callLogPath)" : ""),
        ].merging(logsCalls ? ["LIBVIRT_LOG_FILTERS": "2:rpc.netserverclient 3:*"] : [:]) { $1 }
        let pid =
            if geteuid() == 0 {
                try spawnProgram(
                    "/usr/bin/setpriv",
                    [
                        "--reuid=\(Self.nobody.uid)", "--regid=\(Self.nobody.gid)", "--clear-groups", "--",
                        Self.executable,
                    ],
                    environment: environment
                )
            } else {
                try spawnProgram(Self.executable, [], environment: environment)
            }
        daemon.started(pid)
        do {  // the probe is released at the end of this block, and its connection closed
            let probe = LibvirtHypervisor(uri: uri, logger: ServiceHarness.logger, maximumConnections: 1)
            try await waitUntil("libvirtd answers on \(socketPath)", limit: .seconds(60)) {
                guard !daemon.hasExited else { return true }
                return (try? await onOwnThread { try probe.checkConnection() }) != nil
            }
        }
        guard !daemon.hasExited else {
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw ConditionNeverMet(description: "libvirtd exited at start: \(log.suffix(2000))")
        }
        if logsCalls {
            // The probe's connections close when the last reference to it goes, which a thread that ran it may
            // hold a moment longer: wait for their closes (CONNECT_CLOSE, 2, one per CONNECT_OPEN, 1), so that no later count of calls takes them in.
            try await waitUntil("the probe's connections are closed") {
                let calls = try libvirtdCalls()
                return calls.filter { $0 == 1 }.count == calls.filter { $0 == 2 }.count
            }
        }
    }

    /// The procedure numbers of libvirt's remote program (`remote_protocol.x`: 23 is a lookup by name, 212
    /// reads a state…) that clients have called so far, in order, since the daemon started with `logsCalls`.
    /// Keepalive messages and other programs are left out.
    public func calls() throws -> [Int] {
        precondition(logsCalls, "start the daemon with logsCalls: true")
        return try libvirtdCalls()
    }

    private func libvirtdCalls() throws -> [Int] {
        let received = "RPC_SERVER_CLIENT_MSG_RX:"
        let remoteProgram = "prog=\(0x2000_8086) "
        return try String(contentsOfFile: callLogPath, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard line.contains(received), line.contains(remoteProgram),
                let field = line.split(separator: " ").first(where: { $0.hasPrefix("proc=") })
            else { return nil }
            return Int(field.dropFirst("proc=".count))
        }
    }

    /// The PID of the QEMU process of the running domain `name` (QEMU driver), from the pid file libvirtd keeps.
    public func qemuPID(ofDomain name: String) -> Int32? {
        let text = try? String(contentsOfFile: root + "/run/libvirt/qemu/run/\(name).pid", encoding: .utf8)
        return text.flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Sends `signal` to the daemon (SIGSTOP: it stops answering, its socket still open; SIGCONT).
    public func send(_ signal: Int32) {
        if let pid = daemon.runningPID { kill(pid, signal) }
    }

    /// Sends `signal` to the daemon and waits until it has exited.
    public func stop(signal: Int32) async throws {
        guard let pid = daemon.runningPID else { return }
        kill(pid, signal)
        try await waitUntil("libvirtd exits after signal \(signal)") { daemon.hasExited }
    }

    private static let nobody: (uid: uid_t, gid: gid_t) = {
        guard let entry = getpwnam("nobody") else { return (65534, 65534) }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }()
}

/// The daemon process of the moment: its PID, and whether it has exited (set by a thread that reaps it).
private final class DaemonProcess: @unchecked Sendable {
    private let lock = NSLock()
    private var current: (pid: pid_t, exited: Bool)?

    var runningPID: pid_t? { lock.withLock { current?.exited == false ? current?.pid : nil } }
    var hasExited: Bool { lock.withLock { current?.exited ?? true } }

    /// Records a newly spawned daemon and reaps it on a thread of its own.
    func started(_ pid: pid_t) {
        lock.withLock { current = (pid, false) }
        Thread {
            _ = waitForExit(pid)
            self.lock.withLock { self.current = (pid, true) }
        }.start()
    }
}
