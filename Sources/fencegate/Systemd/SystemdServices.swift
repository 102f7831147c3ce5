import FoundationEssentials
import Glibc
import Logging
import ServiceLifecycle
import UnixSignals

/// Feeds systemd's watchdog (`WatchdogSec=`) at half its interval for as long as the service group runs: a
/// process whose tasks no longer get scheduled stops feeding it and is restarted by systemd. It is the
/// first service listed, so it is asked to stop last, after the others have drained.
struct SystemdWatchdog: Service {
    let notifier: SystemdNotifier?

    func run() async throws {
        guard let notifier, let interval = notifier.watchdogInterval else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            notifier.notify(["WATCHDOG=1"])
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval / 2) }
        }
    }
}

/// Says the service is ready (stdout, systemd's READY=1, the log) once the service group runs, so that a
/// SIGTERM from then on always stops it gracefully.
struct ReadyNotice: Service {
    let notifier: SystemdNotifier?
    let logger: Logger
    /// The line on standard output.
    let line: String
    /// systemd's STATUS.
    let status: String
    let metadata: Logger.Metadata

    func run() async throws {
        print(line)
        fflush(nil)  // stdout is usually a file or the journal here, where it would stay buffered
        notifier?.notify(["READY=1", "MAINPID=\(getpid())", "STATUS=\(status)"])
        logger.notice("ready", metadata: metadata)
        try? await gracefulShutdown()
    }
}

/// Tells systemd that the service is stopping as soon as a graceful shutdown begins (it is listed last, so
/// it hears of it first).
struct StoppingNotice: Service {
    let notifier: SystemdNotifier?

    func run() async throws {
        try? await gracefulShutdown()
        notifier?.notify(["STOPPING=1", "STATUS=stopping: finishing the operations under way"])
    }
}

/// On SIGHUP, re-reads what can change without dropping a request (the gateway's key, hashes and groups,
/// from the options' files or fence_virt.conf) and applies it; tokens need no reload (each request reads
/// them from the audit database). A failed reload keeps the previous settings and is logged.
struct ReloadOnHangup: Service {
    let notifier: SystemdNotifier?
    let logger: Logger
    /// Applies the new settings; returns notes on what was not applied.
    let reload: @Sendable () throws -> [String]

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            var monotonic = timespec()
            clock_gettime(CLOCK_MONOTONIC, &monotonic)
            let microseconds = Int64(monotonic.tv_sec) * 1_000_000 + Int64(monotonic.tv_nsec) / 1000
            notifier?.notify(["RELOADING=1", "MONOTONIC_USEC=\(microseconds)"])
            do {
                let notes = try reload()
                for note in notes { logger.warning("reload: \(note)") }
                logger.notice("reloaded the gateway's key, hashes and groups")
            } catch {
                logger.error("reload failed; the previous settings stay in effect", metadata: ["error": "\(error)"])
            }
            notifier?.notify(["READY=1", "STATUS=reloaded"])
        }
    }
}
