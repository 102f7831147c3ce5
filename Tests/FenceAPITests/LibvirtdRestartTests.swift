import FenceCore
import Foundation
import Store
import TestSupport
import Testing

/// A real libvirtd (Debian's libvirt-daemon) stopped, killed and restarted under the running service, which
/// reaches it over its socket (`test+unix://`, the daemon's test driver). Each daemon start is a fresh world:
/// the domain `test`, running.
@Suite("A real libvirtd restarted under the service", .serialized)
struct LibvirtdRestartTests {
    @Test("a connection dropped while idle is re-opened: the first fence after a restart succeeds")
    func restartWhileIdle() async throws {
        let libvirtd = try await PrivateLibvirtd()
        try await APIHarness.withRunning(uri: libvirtd.uri) { api in
            #expect(try await api.curl("GET", "/domains/test", token: api.ops).json["state"] as? String == "running")
            for signal in [SIGTERM, SIGKILL] {
                try await libvirtd.stop(signal: signal)
                try await libvirtd.start()
                let off = try await api.curl("POST", "/domains/test/off", token: api.ops)
                #expect(off.status == 200, "after libvirtd was stopped with signal \(signal): \(off.text)")
                let shown = try await api.curl("GET", "/domains/test", token: api.ops)
                #expect(shown.json["state"] as? String == "shut-off", "\(shown.text)")
            }
        }
    }

    @Test("while libvirtd is down: 503 hypervisor-unavailable, audited, health says so; it recovers by itself")
    func downThenBack() async throws {
        let libvirtd = try await PrivateLibvirtd()
        try await APIHarness.withRunning(uri: libvirtd.uri) { api in
            #expect(try await api.curl("GET", "/healthz").status == 200)
            try await libvirtd.stop(signal: SIGKILL)

            let refused = try await api.curl("POST", "/domains/test/off", token: api.ops)
            #expect(refused.status == 503, "\(refused.text)")
            #expect(refused.json["type"] as? String == "urn:fencegate:problem:hypervisor-unavailable", "\(refused.text)")
            let health = try await api.curl("GET", "/healthz")
            #expect(health.status == 503)
            #expect(health.json["hypervisor"] as? String == "unavailable", "\(health.text)")

            let rows = try await api.harness.rows()
            let failed = try #require(rows.last)
            #expect(failed.action == "off" && failed.target == "test")
            #expect(failed.state == .finished && failed.result == .failure, "\(failed)")
            #expect(failed.errorCode == "hypervisor_unavailable", "\(failed)")

            try await libvirtd.start()
            #expect(try await api.curl("GET", "/healthz").status == 200)
            let off = try await api.curl("POST", "/domains/test/off", token: api.ops)
            #expect(off.status == 200, "\(off.text)")
            #expect(try await api.curl("GET", "/domains/test", token: api.ops).json["state"] as? String == "shut-off")
        }
    }

    @Test("libvirtd killed and restarted while fences run: 200 or 503 only, every request has its finished row")
    func killedUnderLoad() async throws {
        let libvirtd = try await PrivateLibvirtd()
        try await APIHarness.withRunning(uri: libvirtd.uri) { api in
            let phase = Phase()
            let actions = ["off", "on", "reboot"]
            let seen = try await withThrowingTaskGroup(of: [(Phase.Name, Int)].self) { group in
                for worker in 0..<6 {
                    group.addTask {
                        var seen: [(Phase.Name, Int)] = []
                        var index = worker
                        while let before = phase.current, before != .done {
                            let status = try await api.curl(
                                "POST", "/domains/test/\(actions[index % 3])", token: api.ops
                            ).status
                            // Attributed to a phase only if it began and ended in that phase.
                            if phase.current == before { seen.append((before, status)) }
                            index += 1
                        }
                        return seen
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(700))
                    phase.current = .down
                    try await libvirtd.stop(signal: SIGKILL)
                    try await Task.sleep(for: .milliseconds(700))
                    phase.current = .restarted
                    try await libvirtd.start()
                    try await Task.sleep(for: .milliseconds(700))
                    phase.current = .done
                    return []
                }
                var seen: [(Phase.Name, Int)] = []
                for try await part in group { seen += part }
                return seen
            }
            let statuses = seen.map(\.1)
            let up = seen.filter { $0.0 == .up }.map(\.1)
            let down = seen.filter { $0.0 == .down }.map(\.1)
            let restarted = seen.filter { $0.0 == .restarted }.map(\.1)
            print(
                "libvirtd killed under load: before \(up.count) × 200; while down \(down.filter { $0 == 503 }.count) × 503,"
                    + " \(down.filter { $0 == 200 }.count) × 200; after the restart \(restarted.filter { $0 == 200 }.count) × 200,"
                    + " \(restarted.filter { $0 == 503 }.count) × 503")
            let unexpected = seen.filter { $0.1 != 200 && $0.1 != 503 }
            #expect(unexpected.isEmpty, "\(unexpected)")
            #expect(!up.isEmpty && up.allSatisfy { $0 == 200 }, "before the kill: \(up)")
            #expect(!down.isEmpty && down.contains(503), "while libvirtd was down: \(down)")
            #expect(seen.contains { $0.0 == .restarted && $0.1 == 200 }, "after the restart: \(seen)")

            // Every request that reached the service has exactly one finished row.
            let rows = try await api.harness.rows()
            #expect(rows.allSatisfy { $0.state == .finished }, "\(rows.filter { $0.state != .finished })")
            #expect(rows.count >= seen.count, "\(rows.count) rows for \(seen.count) answered requests")
            #expect(rows.filter { $0.result == .success }.count >= statuses.filter { $0 == 200 }.count)
            let off = try await api.curl("POST", "/domains/test/off", token: api.ops)
            #expect(off.status == 200, "\(off.text)")
        }
    }
}

/// Which part of a fault test is under way; read and set from several tasks.
private final class Phase: @unchecked Sendable {
    enum Name { case up, down, restarted, done }
    private let lock = NSLock()
    private var name: Name = .up

    var current: Name? {
        get { lock.withLock { name } }
        set { lock.withLock { name = newValue ?? .done } }
    }
}
