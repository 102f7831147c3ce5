import Dispatch
import FoundationEssentials
import Glibc

/// Signals that another process may have committed to an audit database, so a reader knows when to look again
/// without polling: inotify on the database's directory reports writes to the database and its `-wal` file
/// (`IN_MODIFY`, `IN_CLOSE_WRITE`, and the `-wal` file created or renamed into place, as when the writer
/// restarts). A slow timer signals as well, in case an event was missed (or the queue overflowed).
///
/// Signals coalesce: however many writes happen while the reader is busy, it sees one more signal.
public final class AuditLogChanges: Sendable {
    /// Ends when the task iterating it is cancelled; only one task may iterate it.
    public let signals: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    /// The fallback re-check when no event arrived.
    public static let defaultFallback: Duration = .seconds(5)
    /// After a write to the database, the reader is signalled again after these milliseconds: the commit that
    /// wrote becomes visible only after its fsync (if it waits for one).
    static let settleDelays = [20, 100, 500, 2000]

    /// Starts watching the directory of the database at `path`.
    /// - Throws: `InotifyError` if inotify cannot be set up (no instances left, the directory unreadable).
    public init(databasePath path: String, fallback: Duration = defaultFallback) throws(InotifyError) {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let names: Set<String> = [url.lastPathComponent, url.lastPathComponent + "-wal"]
        let inotify = try Inotify()
        try inotify.addWatch(directory, mask: UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO))

        let (signals, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.signals = signals
        self.continuation = continuation
        let queue = DispatchQueue(label: "fencegate.audit-log-changes")
        let events = DispatchSource.makeReadSource(fileDescriptor: inotify.descriptor, queue: queue)
        let settling = SettlingRechecks()
        events.setEventHandler {
            // A read error leaves the events unread; the timer still signals.
            let read = (try? inotify.readEvents()) ?? []
            guard read.contains(where: { $0.watch == -1 || names.contains($0.name) }) else { return }
            continuation.yield()
            // A WAL commit writes its frames (the event), syncs them, and only then makes them visible to
            // readers (in the -shm index, written through mmap: no event). A reader woken by the write may look
            // too early, so it is signalled again as the commit settles: at most these few signals per burst.
            guard !settling.pending else { return }
            settling.pending = true
            for delay in Self.settleDelays {
                queue.asyncAfter(deadline: .now() + .milliseconds(delay)) {
                    continuation.yield()
                    if delay == Self.settleDelays.last { settling.pending = false }
                }
            }
        }
        // The instance (and so its descriptor) lives until the source is cancelled.
        events.setCancelHandler { withExtendedLifetime(inotify) {} }
        let timer = DispatchSource.makeTimerSource(queue: queue)
        let interval = DispatchTimeInterval.milliseconds(
            Int(fallback.components.seconds * 1000 + fallback.components.attoseconds / 1_000_000_000_000_000)
        )
        timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(500))
        timer.setEventHandler { continuation.yield() }
        let sources = WatchSources(events: events, timer: timer)
        continuation.onTermination = { _ in sources.cancel() }
        events.resume()
        timer.resume()
    }

    /// Stops watching (and closes the inotify descriptor) if the stream was not ended by its reader.
    deinit {
        continuation.finish()
    }
}

/// Whether re-check signals after a write are scheduled already; touched only on the watch's serial queue.
private final class SettlingRechecks: @unchecked Sendable {
    var pending = false
}

/// The two dispatch sources of one `AuditLogChanges`, cancelled together when its stream ends.
///
/// `@unchecked Sendable`: the references never change, and `DispatchSource.cancel()` may be called from any
/// thread (cancelling twice is harmless).
private final class WatchSources: @unchecked Sendable {
    private let events: any DispatchSourceRead
    private let timer: any DispatchSourceTimer

    init(events: any DispatchSourceRead, timer: any DispatchSourceTimer) {
        self.events = events
        self.timer = timer
    }

    func cancel() {
        events.cancel()
        timer.cancel()
    }
}
