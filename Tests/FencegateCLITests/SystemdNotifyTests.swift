import Foundation
import TestSupport
import Testing

/// `serve` under systemd's `Type=notify`, seen from the notification socket systemd would hold.
@Suite("systemd notification protocol")
struct SystemdNotifyTests {
    @Test("READY with MAINPID once serving, watchdog pings, RELOADING then READY on SIGHUP, STOPPING on SIGTERM")
    func notifyProtocol() async throws {
        let fencegate = try FencegateBinary()
        let notify = try NotifySocket(path: fencegate.directory.file("notify"))
        let serve = try fencegate.start(
            ["serve", "--listen", "127.0.0.1:0", "--uri", Fixtures.clusterURI, "--log-level", "notice"],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"]
        )
        let pid = serve.process.processIdentifier
        defer { if serve.process.isRunning { kill(pid, SIGKILL) } }

        let ready = try #require(try await notify.messages(until: "READY=1").last)
        #expect(ready.contains("MAINPID=\(pid)"), "\(ready)")
        #expect(ready.contains("STATUS=fencegate serving http://127.0.0.1:"), "\(ready)")
        #expect(serve.stdout.contains("fencegate serving"), "READY=1 came before serve was listening")

        var pings = 0
        for _ in 0..<3 where try await notify.receive(timeout: .seconds(5)) == "WATCHDOG=1" { pings += 1 }
        #expect(pings == 3, "the watchdog is fed at half of WATCHDOG_USEC")

        kill(pid, SIGHUP)
        let reload = try await notify.messages(until: "READY=1").filter { $0 != "WATCHDOG=1" }
        #expect(reload.count == 2 && reload[0].hasPrefix("RELOADING=1\nMONOTONIC_USEC="), "\(reload)")
        #expect(serve.process.isRunning, "SIGHUP must not stop the service")

        kill(pid, SIGTERM)
        _ = try await notify.messages(until: "STOPPING=1")
        try await waitUntil("serve exits") { !serve.process.isRunning }
        #expect(serve.process.terminationStatus == 0, "\(serve.stderr)")
    }

    @Test("without NOTIFY_SOCKET nothing is sent and serve runs as usual")
    func withoutSystemd() async throws {
        let fencegate = try FencegateBinary()
        let serve = try await RunningServer.start(fencegate, ["--uri", Fixtures.clusterURI])
        kill(serve.serve.process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .milliseconds(300))
        #expect(serve.serve.process.isRunning)
        #expect(try await serve.stop() == 0)
    }
}

/// The unit file in systemd/: systemd's own checker accepts it (with the built binary in ExecStart).
@Suite("systemd unit file")
struct SystemdUnitTests {
    static let analyzer = "/usr/bin/systemd-analyze"

    @Test("systemd-analyze verify accepts systemd/fencegate.service")
    func verify() async throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: Self.analyzer),
            "systemd-analyze is missing: install systemd (scripts/install-dependencies --tests)"
        )
        let directory = try TemporaryDirectory()
        let unit = try String(contentsOfFile: packageRoot + "/systemd/fencegate.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/fencegate serve"))
        #expect(
            unit.contains("Type=notify") && unit.contains("WatchdogSec=")
                && unit.contains("ExecReload=/bin/kill -HUP $MAINPID")
        )
        let path = directory.file("fencegate.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/fencegate", with: FencegateBinary.url.path)
            .write(toFile: path, atomically: true, encoding: .utf8)
        let result = try await runProgram(Self.analyzer, ["verify", path])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(!result.stderr.contains("fencegate.service:"), "\(result.stderr)")
    }
}
