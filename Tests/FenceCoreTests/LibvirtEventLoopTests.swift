import Foundation
import Synchronization
import TestSupport
import Testing

@testable import FenceCore

/// libvirt on Fencegate's own event loop (`LibvirtEventLoop`), with a real libvirtd: what libvirt needs a loop
/// for (a closed socket noticed, keepalive, domain events pushed by the daemon) works through it.
@Suite("libvirt's event loop: Fencegate's own", .serialized)
struct LibvirtEventLoopTests {
    @Test("libvirt runs on Fencegate's loop, not its default one")
    func ownLoopInUse() {
        #expect(LibvirtRuntime.failure == nil)
        #expect(LibvirtRuntime.eventLoopFailure == nil)
    }

    /// The name of the calling thread, as the kernel keeps it.
    static func threadName() -> String {
        let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
        return name.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The CPU time of the loop's thread so far, in clock ticks (user + system, /proc/self/task/*/stat).
    static func loopCPUTicks() throws -> Int {
        for task in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") {
            let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)
            guard comm?.trimmingCharacters(in: .whitespacesAndNewlines) == "libvirt-events" else { continue }
            let stat = try String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8)
            let fields = stat.split(separator: ")").last!.split(separator: " ")
            return Int(fields[11])! + Int(fields[12])!
        }
        throw ConditionNeverMet(description: "no thread named libvirt-events")
    }

    @Test("a watch: called on the loop's thread with what is ready; silent while off, a hang-up too; freed once")
    func watchContract() async throws {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        let (readEnd, writeEnd) = (ends[0], ends[1])
        defer { close(readEnd) }
        let log = Mutex<[String]>([])
        let watch = Mutex<Int32?>(nil)
        let added = LibvirtEvents.addWatch(
            fd: readEnd,
            events: LibvirtEvents.readable,
            ready: { events in
                var byte: UInt8 = 0
                _ = read(readEnd, &byte, 1)
                // A hang-up is reported until the watch is turned off: off here, from the loop's thread.
                if events & LibvirtEvents.hangUp != 0, let id = watch.withLock({ $0 }) {
                    LibvirtEvents.updateWatch(id, events: 0)
                }
                log.withLock { $0.append("ready \(events) \(Self.threadName())") }
            },
            freed: { log.withLock { $0.append("freed \(Self.threadName())") } }
        )
        let id = try #require(added)
        watch.withLock { $0 = id }
        func written() -> Bool {
            var byte: UInt8 = 1
            return write(writeEnd, &byte, 1) == 1
        }
        #expect(written())
        try await waitUntil("the byte is reported") { log.withLock { $0 == ["ready 1 libvirt-events"] } }

        LibvirtEvents.updateWatch(id, events: 0)
        #expect(written())
        close(writeEnd)  // a hang-up, while off
        let busy = try Self.loopCPUTicks()
        try await Task.sleep(for: .milliseconds(500))
        #expect(log.withLock { $0.count } == 1, "\(log.withLock { $0 })")
        // Not reported, and not looked at either: the loop sleeps (a loop that kept seeing the hang-up and
        // skipping it would spin: 50 ticks in 0.5 s).
        #expect(try Self.loopCPUTicks() - busy <= 5)

        LibvirtEvents.updateWatch(id, events: LibvirtEvents.readable)
        try await waitUntil("the hang-up is reported once the watch is on again") {
            log.withLock { $0.last?.hasPrefix("ready ") == true && Int32($0.last!.split(separator: " ")[1])! & 8 != 0 }
        }
        try await Task.sleep(for: .milliseconds(200))
        let called = log.withLock { $0.count }
        #expect(log.withLock { $0.allSatisfy { $0.hasSuffix(" libvirt-events") } }, "\(log.withLock { $0 })")

        #expect(LibvirtEvents.removeWatch(id))
        #expect(!LibvirtEvents.removeWatch(id))
        try await waitUntil("the watch is freed") { log.withLock { $0.last == "freed libvirt-events" } }
        try await Task.sleep(for: .milliseconds(200))
        #expect(log.withLock { $0.count } == called + 1, "\(log.withLock { $0 })")
    }

    @Test("a timer: silent at -1, at every turn at 0, every N ms, each update restarting its period; freed once")
    func timerContract() async throws {
        let fired = Atomic<Int>(0)
        let freed = Mutex<[String]>([])
        let added = LibvirtEvents.addTimer(
            frequency: -1,
            fired: { fired.add(1, ordering: .relaxed) },
            freed: { freed.withLock { $0.append(Self.threadName()) } }
        )
        let id = try #require(added)
        func count() -> Int { fired.load(ordering: .relaxed) }
        func settled() async throws -> Int {
            try await Task.sleep(for: .milliseconds(100))  // a firing already taken up may still land
            return count()
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(count() == 0)

        LibvirtEvents.updateTimer(id, frequency: 0)
        try await waitUntil("fired at every turn") { count() >= 100 }
        LibvirtEvents.updateTimer(id, frequency: -1)
        var before = try await settled()
        try await Task.sleep(for: .milliseconds(300))
        #expect(count() == before)

        LibvirtEvents.updateTimer(id, frequency: 50)
        try await waitUntil("fired every 50 ms") { count() >= before + 3 }
        LibvirtEvents.updateTimer(id, frequency: -1)
        before = try await settled()

        // Set to 2 s and set again every 250 ms for 3 s (keepalive resets its timer so at each message): it
        // never fires while that goes on, then fires 2 s after the last.
        LibvirtEvents.updateTimer(id, frequency: 2000)
        for _ in 0..<12 {
            try await Task.sleep(for: .milliseconds(250))
            LibvirtEvents.updateTimer(id, frequency: 2000)
        }
        #expect(count() == before)
        try await waitUntil("fired 2 s after the last update", limit: .seconds(10)) { count() > before }

        LibvirtEvents.updateTimer(id, frequency: 50)
        before = count()
        try await waitUntil("fired every 50 ms again") { count() >= before + 2 }
        #expect(LibvirtEvents.removeTimer(id))
        #expect(!LibvirtEvents.removeTimer(id))
        try await waitUntil("the timer is freed") { freed.withLock { $0 == ["libvirt-events"] } }
        before = try await settled()
        try await Task.sleep(for: .milliseconds(300))
        #expect(count() == before)
        #expect(freed.withLock { $0 } == ["libvirt-events"])
    }

    @Test("domain events a remote libvirtd pushes reach the observer: another client's destroy, then its start")
    func remoteEvents() async throws {
        let libvirtd = try await PrivateLibvirtd()
        let hypervisor = LibvirtHypervisor(uri: libvirtd.uri, logger: ServiceHarness.logger, maximumConnections: 1)
        let changes = Atomic<Int>(0)
        hypervisor.observeChanges { changes.add(1, ordering: .relaxed) }
        try await onOwnThread { try hypervisor.checkConnection() }
        let opened = changes.load(ordering: .relaxed)  // the reconnect's own notice
        for command in ["destroy", "start"] {
            let before = changes.load(ordering: .relaxed)
            let virsh = try await runProgram("/usr/bin/virsh", ["-c", libvirtd.uri, command, "test"])
            #expect(virsh.status == 0, "virsh \(command): \(virsh.stderr)")
            try await waitUntil("the \(command) is reported", limit: .seconds(10)) {
                changes.load(ordering: .relaxed) > before
            }
        }
        #expect(changes.load(ordering: .relaxed) >= opened + 2)
    }

    @Test(
        "a libvirtd that stops answering is found out by keepalive (5 s × 3); the connection re-opens once it answers"
    )
    func keepaliveClosesAStalledConnection() async throws {
        let libvirtd = try await PrivateLibvirtd()
        let hypervisor = LibvirtHypervisor(uri: libvirtd.uri, logger: ServiceHarness.logger, maximumConnections: 1)
        func idleConnectionIsAlive() -> Bool { (try? hypervisor.withIdleConnection { _ in true }) == true }
        try await onOwnThread { try hypervisor.checkConnection() }
        #expect(idleConnectionIsAlive())
        libvirtd.send(SIGSTOP)
        defer { libvirtd.send(SIGCONT) }
        // Nothing is asked of the daemon: only keepalive's pings, sent and awaited by the loop, can tell.
        try await waitUntil("keepalive closes the connection", limit: .seconds(40)) { !idleConnectionIsAlive() }
        libvirtd.send(SIGCONT)
        let domain = try await onOwnThread { try hypervisor.domain(DomainTarget("test")) }
        #expect(domain.power == .on)
        #expect(idleConnectionIsAlive())
    }
}
