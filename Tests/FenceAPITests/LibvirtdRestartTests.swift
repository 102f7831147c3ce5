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
            #expect(
                refused.json["type"] as? String == "urn:fencegate:problem:hypervisor-unavailable",
                "\(refused.text)"
            )
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

    @Test("libvirtd killed and restarted while fences run: 200 or 503 only; every answered operation is its row")
    func killedUnderLoad() async throws {
        let libvirtd = try await PrivateLibvirtd()
        try await APIHarness.withRunning(uri: libvirtd.uri) { api in
            let phase = Phase()
            let actions = ["off", "on", "reboot"]
            let answers = try await withThrowingTaskGroup(of: [Answer].self) { group in
                for worker in 0..<6 {
                    group.addTask {
                        var answers: [Answer] = []
                        var index = worker
                        while let before = phase.current, before != .done {
                            let action = actions[index % 3]
                            let response = try await api.curl("POST", "/domains/test/\(action)", token: api.ops)
                            // Attributed to a phase only if it began and ended in that phase.
                            let attributed = phase.current == before ? before : nil
                            if let attributed { phase.count(attributed, succeeded: response.status == 200) }
                            answers.append(
                                Answer(
                                    phase: attributed,
                                    action: action,
                                    status: response.status,
                                    operationID: (response.json["operation_id"] as? NSNumber)?.int64Value
                                )
                            )
                            index += 1
                        }
                        return answers
                    }
                }
                // Each phase lasts until at least three requests began and ended within it (at least 700 ms):
                // on a machine busy with the rest of the suite, a request may take longer than a fixed window.
                group.addTask {
                    func hold(_ name: Phase.Name, succeeded: Int = 0) async throws {
                        try await Task.sleep(for: .milliseconds(700))
                        try await waitUntil("three requests answered while \(name)", limit: .seconds(60)) {
                            phase.answered(name) >= 3 && phase.succeeded(name) >= succeeded
                        }
                    }
                    try await hold(.up)
                    phase.current = .down
                    try await libvirtd.stop(signal: SIGKILL)
                    try await hold(.down)
                    phase.current = .restarted
                    try await libvirtd.start()
                    try await hold(.restarted, succeeded: 1)
                    phase.current = .done
                    return []
                }
                var answers: [Answer] = []
                for try await part in group { answers += part }
                return answers
            }
            func statuses(_ name: Phase.Name) -> [Int] { answers.filter { $0.phase == name }.map(\.status) }
            let (up, down, restarted) = (statuses(.up), statuses(.down), statuses(.restarted))
            print(
                "libvirtd killed under load: before \(up.count) × 200; while down \(down.filter { $0 == 503 }.count) × 503,"
                    + " \(down.filter { $0 == 200 }.count) × 200; after the restart \(restarted.filter { $0 == 200 }.count) × 200,"
                    + " \(restarted.filter { $0 == 503 }.count) × 503"
            )
            let unexpected = answers.filter { $0.status != 200 && $0.status != 503 }
            #expect(unexpected.isEmpty, "\(unexpected)")
            #expect(!up.isEmpty && up.allSatisfy { $0 == 200 }, "before the kill: \(up)")
            #expect(!down.isEmpty && down.contains(503), "while libvirtd was down: \(down)")
            #expect(restarted.contains(200), "after the restart: \(restarted)")

            // Every 200 carried its operation id, and that row is this operation, finished with success; no
            // two answers share a row; and every row is finished, none left started.
            let rows = try await api.harness.rows()
            let byID = Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0) })
            let succeeded = answers.filter { $0.status == 200 }
            #expect(succeeded.allSatisfy { $0.operationID != nil }, "a 200 without operation_id")
            #expect(Set(succeeded.compactMap(\.operationID)).count == succeeded.count, "two answers name one row")
            for answer in succeeded {
                guard let id = answer.operationID, let row = byID[id] else {
                    Issue.record("no row for the answered operation \(answer)")
                    continue
                }
                #expect(
                    row.action == answer.action && row.state == .finished && row.result == .success,
                    "\(answer): \(row)"
                )
            }
            #expect(rows.allSatisfy { $0.state == .finished }, "\(rows.filter { $0.state != .finished })")
            // Rows with success are exactly the 200s: none is a success that the client was not told of.
            #expect(rows.filter { $0.result == .success }.count == succeeded.count)
            #expect(rows.count == answers.count, "\(rows.count) rows for \(answers.count) answered requests")
            let off = try await api.curl("POST", "/domains/test/off", token: api.ops)
            #expect(off.status == 200, "\(off.text)")
        }
    }
}

/// One answered request of the load above.
private struct Answer: Sendable {
    let phase: Phase.Name?
    let action: String
    let status: Int
    let operationID: Int64?
}

/// Which part of a fault test is under way; read and set from several tasks.
private final class Phase: @unchecked Sendable {
    enum Name { case up, down, restarted, done }
    private let lock = NSLock()
    private var name: Name = .up
    private var counts: [Name: (answered: Int, succeeded: Int)] = [:]

    var current: Name? {
        get { lock.withLock { name } }
        set { lock.withLock { name = newValue ?? .done } }
    }

    /// Counts a request answered within phase `name`.
    func count(_ name: Name, succeeded: Bool) {
        lock.withLock {
            counts[name, default: (0, 0)].answered += 1
            if succeeded { counts[name, default: (0, 0)].succeeded += 1 }
        }
    }

    /// Requests answered within phase `name` so far, and how many of them with 200.
    func answered(_ name: Name) -> Int { lock.withLock { counts[name]?.answered ?? 0 } }
    func succeeded(_ name: Name) -> Int { lock.withLock { counts[name]?.succeeded ?? 0 } }
}
