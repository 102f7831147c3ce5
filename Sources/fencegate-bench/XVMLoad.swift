import ArgumentParser
import FenceCore
import FoundationEssentials
import Glibc
import MulticastGateway
import Synchronization

/// Closed-loop fence_xvm load without a process per request: `workers` threads, each with its own callback
/// listener, send signed `status` requests back to back for `duration` seconds. Run inside a guest namespace.
struct XVMLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xvm-load",
        abstract: "Send signed fence_xvm status requests from concurrent workers; prints JSON latencies."
    )

    @Option(help: "Key file shared with the daemon.") var keyFile: String
    @Option(help: "Interface to multicast from.") var interface = "eth0"
    @Option(help: "This namespace's IPv4 address on that interface (the call-back address).") var address: String
    @Option(help: "Multicast group.") var group = "225.0.0.12"
    @Option(help: "Multicast port.") var port: UInt16 = 1229
    @Option(help: "Concurrent workers (requests in flight).") var workers = 8
    @Option(help: "Seconds to run.") var duration = 5.0
    @Option(help: "Domains to ask about, comma-separated; workers take turns over them.") var domains = "node1"

    func run() throws {
        guard let groupAddress = SocketAddress(host: group, port: port),
            let callback = SocketAddress(host: address, port: 0), callback.family == .ipv4
        else { throw ValidationError("group and address must be numeric IPv4 addresses") }
        let key: [UInt8]
        do {
            key = try KeyFile.read(at: keyFile).key
        } catch {
            throw ValidationError(error.description)
        }
        let names = domains.split(separator: ",").map(String.init)
        let results = Mutex<(latencies: [Double], failures: [String: Int], retransmissions: Int)>(([], [:], 0))
        let clock = ContinuousClock()
        let started = clock.now
        let end = started + .milliseconds(Int(duration * 1000))
        let interface = interface
        let finished = Mutex(0)
        for index in 0..<workers {
            try DetachedThread.start(name: "xvm-load-\(index)") {
                defer { finished.withLock { $0 += 1 } }
                // Each worker owns its client (a listener of its own); not shared between threads.
                let client: FenceXVMClient
                do {
                    client = try FenceXVMClient(
                        group: groupAddress,
                        interface: interface,
                        callbackHost: callback.bytes,
                        key: key
                    )
                } catch {
                    results.withLock { $0.failures["setup: \(error)", default: 0] += 1 }
                    return
                }
                var latencies: [Double] = []
                var failures: [String: Int] = [:]
                var turn = index
                while clock.now < end {
                    let began = clock.now
                    do {
                        let answer = try client.request(.status, domain: names[turn % names.count])
                        if answer == 0 || answer == 2 {
                            latencies.append((clock.now - began).seconds * 1000)
                        } else {
                            failures["answer \(answer)", default: 0] += 1
                        }
                    } catch {
                        failures["\(error)", default: 0] += 1
                    }
                    turn += 1
                }
                results.withLock {
                    $0.latencies += latencies
                    $0.failures.merge(failures, uniquingKeysWith: +)
                    $0.retransmissions += client.retransmissions
                }
            }
        }
        // Threads finish at `end`, plus at most one request's time.
        while finished.withLock({ $0 }) < workers { DetachedThread.sleep(milliseconds: 20) }
        let seconds = (clock.now - started).seconds
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpuSeconds =
            Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        let output: BenchJSON = results.withLock { result in
            .object([
                "seconds": .number(seconds), "latencies_ms": .numbers(result.latencies),
                "failures": .object(result.failures.mapValues(BenchJSON.integer)),
                "retransmissions": .integer(result.retransmissions), "cpu_seconds": .number(cpuSeconds),
            ])
        }
        print(try output.text())
    }
}
