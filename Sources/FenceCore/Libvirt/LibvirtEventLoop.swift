internal import CLibvirt
import Glibc
import Locking

/// libvirt's event loop (keepalive, the close callback, domain events), Fencegate's own on epoll.
///
/// libvirt's default loop (GLib's) is interrupted each time another thread changes what it watches, and a call
/// to a remote libvirtd changes it three times: the calling thread takes the connection's socket from the loop
/// and gives it back, and the reply resets the keepalive timer. Each interrupt wakes the loop's thread, which
/// then competes for a core with the call. Here a watch is an epoll registration and a timer a timerfd, both
/// changed from any thread without waking the loop; it wakes only when something is ready (or to release what
/// a removal left to free).
///
/// libvirt's contract (`virEventRegisterImpl`), as kept here: callbacks run on the loop's thread only, never
/// with the loop's lock held; a watch whose events are 0 reports nothing (not even a hang-up: it is taken out
/// of epoll until enabled again); a timer's frequency is -1 (off), 0 (fire at every turn of the loop) or a
/// period in milliseconds; a watch or timer removed or turned off is not called again, save once if the loop
/// had already taken it up (libvirt's callbacks check their own state, as they must with its default loop);
/// its free function runs later on the loop's thread, after any such call, from a clean stack, never inside
/// the remove call.
final class LibvirtEventLoop: @unchecked Sendable {
    // @unchecked: `epoll` and `wakeup` are set once; the registry is behind its mutex.

    /// The loop libvirt was given, once `LibvirtRuntime` has registered it.
    private static let current = Locked<LibvirtEventLoop?>(nil)

    private let epoll: Int32
    /// Written to wake the loop after a removal, so that its free function runs.
    private let wakeup: Int32
    private let registry = Locked(Registry())

    /// A file descriptor libvirt watches.
    private struct Watch: @unchecked Sendable {
        // @unchecked: `opaque` and the functions are libvirt's, handed back to it on the loop's thread only.
        let fd: Int32
        /// A duplicate of `fd`, which is what epoll registers: libvirt may watch one descriptor twice, and
        /// epoll takes each descriptor once.
        let registered: Int32
        var events: Int32
        /// Whether `registered` is in epoll now (exactly when `events` is not 0, unless epoll refused it).
        var inEpoll: Bool
        let callback: virEventHandleCallback
        let opaque: UnsafeMutableRawPointer?
        let free: virFreeCallback?
    }

    /// A timer libvirt set.
    private struct Timer: @unchecked Sendable {
        // @unchecked: as `Watch`.
        let fd: Int32
        var frequency: Int32
        let callback: virEventTimeoutCallback
        let opaque: UnsafeMutableRawPointer?
        let free: virFreeCallback?
    }

    /// What a removal leaves to free on the loop's thread.
    private struct PendingFree: @unchecked Sendable {
        // @unchecked: as `Watch`.
        let free: virFreeCallback
        let opaque: UnsafeMutableRawPointer?
    }

    private struct Registry: Sendable {
        var lastID: Int32 = 0
        var watches: [Int32: Watch] = [:]
        var timers: [Int32: Timer] = [:]
        var frees: [PendingFree] = []

        mutating func nextID() -> Int32? {
            guard lastID < Int32.max else { return nil }
            lastID += 1
            return lastID
        }
    }

    /// What an epoll event's data says: the kind in the high half, the id in the low half.
    private enum Kind: UInt64 {
        case wakeup = 0
        case watch = 1
        case timer = 2
    }

    private init(epoll: Int32, wakeup: Int32) {
        self.epoll = epoll
        self.wakeup = wakeup
    }

    /// Creates the loop, starts its thread and registers it with libvirt (before any connection is opened).
    /// - Throws: why it could not (no epoll, no eventfd, no thread); libvirt is then left without it.
    static func register() throws(LibvirtEventLoopError) {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw LibvirtEventLoopError(operation: "epoll_create1", errno: errno) }
        let wakeup = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeup >= 0 else {
            let failure = errno
            close(epoll)
            throw LibvirtEventLoopError(operation: "eventfd", errno: failure)
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Kind.wakeup.rawValue << 32
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, wakeup, &event) == 0 else {
            let failure = errno
            close(wakeup)
            close(epoll)
            throw LibvirtEventLoopError(operation: "epoll_ctl", errno: failure)
        }
        let loop = LibvirtEventLoop(epoll: epoll, wakeup: wakeup)
        do {
            try DetachedThread.start(name: "fencegate.libvirt-events") { loop.run() }
        } catch {
            close(wakeup)
            close(epoll)
            throw LibvirtEventLoopError(operation: "pthread_create", errno: error.code)
        }
        current.withLock { $0 = loop }
        virEventRegisterImpl(
            libvirtAddHandle,
            libvirtUpdateHandle,
            libvirtRemoveHandle,
            libvirtAddTimeout,
            libvirtUpdateTimeout,
            libvirtRemoveTimeout
        )
    }

    /// The registered loop (libvirt calls only after `register()` has set it).
    fileprivate static var shared: LibvirtEventLoop? { current.withLock { $0 } }

    // MARK: - Watches

    fileprivate func addWatch(
        fd: Int32,
        events: Int32,
        callback: virEventHandleCallback,
        opaque: UnsafeMutableRawPointer?,
        free: virFreeCallback?
    ) -> Int32 {
        guard fd >= 0 else { return -1 }
        let registered = fcntl(fd, F_DUPFD_CLOEXEC, 3)  // never 0, 1 or 2, even with standard streams closed
        guard registered >= 0 else { return -1 }
        return registry.withLock { registry -> Int32 in
            guard let id = registry.nextID() else {
                close(registered)
                return -1
            }
            var watch = Watch(
                fd: fd,
                registered: registered,
                events: events,
                inEpoll: false,
                callback: callback,
                opaque: opaque,
                free: free
            )
            // Added even when nothing is wanted yet, so that a descriptor epoll refuses fails here, where
            // libvirt learns of it, and not silently later.
            guard register(watch, id: id, operation: EPOLL_CTL_ADD) else {
                close(registered)
                return -1
            }
            if events == 0 {
                _ = epoll_ctl(epoll, EPOLL_CTL_DEL, registered, nil)
            } else {
                watch.inEpoll = true
            }
            registry.watches[id] = watch
            return id
        }
    }

    fileprivate func updateWatch(_ id: Int32, events: Int32) {
        registry.withLock { registry in
            guard var watch = registry.watches[id], watch.events != events || (events != 0) != watch.inEpoll else {
                return
            }
            watch.events = events
            if events == 0 {
                if watch.inEpoll { _ = epoll_ctl(epoll, EPOLL_CTL_DEL, watch.registered, nil) }
                watch.inEpoll = false
            } else if watch.inEpoll, !register(watch, id: id, operation: EPOLL_CTL_MOD) {
                watch.inEpoll = errno != ENOENT  // else still registered, with its old events: tried again later
            }
            if events != 0, !watch.inEpoll {
                // Not in epoll (turned off, or refused before): added again; should epoll refuse it now (out of
                // memory, `max_user_watches`), the next change tries again.
                watch.inEpoll = register(watch, id: id, operation: EPOLL_CTL_ADD)
            }
            registry.watches[id] = watch
        }
    }

    fileprivate func removeWatch(_ id: Int32) -> Int32 {
        let removed = registry.withLock { registry -> Bool in
            guard let watch = registry.watches.removeValue(forKey: id) else { return false }
            retire(watch.registered, inEpoll: watch.inEpoll, free: watch.free, opaque: watch.opaque, in: &registry)
            return true
        }
        return removed ? 0 : -1
    }

    /// Takes a removed watch's or timer's descriptor out of epoll and closes it, and leaves its free function
    /// to the loop, which is woken to run it. Call with the registry locked.
    private func retire(
        _ descriptor: Int32,
        inEpoll: Bool,
        free: virFreeCallback?,
        opaque: UnsafeMutableRawPointer?,
        in registry: inout Registry
    ) {
        if inEpoll { _ = epoll_ctl(epoll, EPOLL_CTL_DEL, descriptor, nil) }
        close(descriptor)
        if let free { registry.frees.append(PendingFree(free: free, opaque: opaque)) }
        wake()
    }

    /// Adds or changes the epoll registration of `watch`. Call with the registry locked.
    private func register(_ watch: Watch, id: Int32, operation: Int32) -> Bool {
        var event = epoll_event()
        var wanted: UInt32 = 0
        if watch.events & Int32(VIR_EVENT_HANDLE_READABLE.rawValue) != 0 { wanted |= EPOLLIN.rawValue }
        if watch.events & Int32(VIR_EVENT_HANDLE_WRITABLE.rawValue) != 0 { wanted |= EPOLLOUT.rawValue }
        event.events = wanted  // errors and hang-ups are always reported
        event.data.u64 = Kind.watch.rawValue << 32 | UInt64(UInt32(bitPattern: id))
        return epoll_ctl(epoll, operation, watch.registered, &event) == 0
    }

    // MARK: - Timers

    fileprivate func addTimer(
        frequency: Int32,
        callback: virEventTimeoutCallback,
        opaque: UnsafeMutableRawPointer?,
        free: virFreeCallback?
    ) -> Int32 {
        let fd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        guard fd >= 0 else { return -1 }
        return registry.withLock { registry -> Int32 in
            guard let id = registry.nextID() else {
                close(fd)
                return -1
            }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = Kind.timer.rawValue << 32 | UInt64(UInt32(bitPattern: id))
            guard epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0 else {
                close(fd)
                return -1
            }
            Self.arm(fd, frequency: frequency)
            registry.timers[id] = Timer(
                fd: fd,
                frequency: frequency,
                callback: callback,
                opaque: opaque,
                free: free
            )
            return id
        }
    }

    fileprivate func updateTimer(_ id: Int32, frequency: Int32) {
        registry.withLock { registry in
            guard var timer = registry.timers[id] else { return }
            timer.frequency = frequency
            Self.arm(timer.fd, frequency: frequency)
            registry.timers[id] = timer
        }
    }

    fileprivate func removeTimer(_ id: Int32) -> Int32 {
        let removed = registry.withLock { registry -> Bool in
            guard let timer = registry.timers.removeValue(forKey: id) else { return false }
            retire(timer.fd, inEpoll: true, free: timer.free, opaque: timer.opaque, in: &registry)
            return true
        }
        return removed ? 0 : -1
    }

    /// Sets `fd` to fire every `frequency` ms, at once and at every turn for 0, never for a negative one.
    private static func arm(_ fd: Int32, frequency: Int32) {
        var period = timespec()
        if frequency == 0 {
            period.tv_nsec = 1
        } else if frequency > 0 {
            period.tv_sec = Int(frequency / 1000)
            period.tv_nsec = Int(frequency % 1000) * 1_000_000
        }
        var setting = itimerspec(it_interval: period, it_value: period)
        _ = timerfd_settime(fd, 0, &setting, nil)
    }

    // MARK: - The loop

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeup, &one, MemoryLayout<UInt64>.size)
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 32)
        while true {
            let count = epoll_wait(epoll, &events, Int32(events.count), -1)
            if count < 0 {
                if errno != EINTR { DetachedThread.sleep(milliseconds: 100) }
                continue
            }
            for index in 0..<Int(count) {
                let data = events[index].data.u64
                let id = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                switch Kind(rawValue: data >> 32) {
                case .wakeup:
                    var value: UInt64 = 0
                    _ = read(wakeup, &value, MemoryLayout<UInt64>.size)
                case .watch:
                    dispatchWatch(id, ready: events[index].events)
                case .timer:
                    dispatchTimer(id)
                case nil:
                    continue
                }
            }
            for pending in registry.withLock({ registry in
                defer { registry.frees = [] }
                return registry.frees
            }) {
                pending.free(pending.opaque)
            }
        }
    }

    /// Calls the watch's callback with what is ready of what it still wants (it may have been changed or
    /// removed since epoll reported it).
    private func dispatchWatch(_ id: Int32, ready: UInt32) {
        guard let watch = registry.withLock({ $0.watches[id] }), watch.events != 0 else { return }
        var events: Int32 = 0
        if ready & EPOLLIN.rawValue != 0 { events |= Int32(VIR_EVENT_HANDLE_READABLE.rawValue) }
        if ready & EPOLLOUT.rawValue != 0 { events |= Int32(VIR_EVENT_HANDLE_WRITABLE.rawValue) }
        events &= watch.events
        if ready & EPOLLERR.rawValue != 0 { events |= Int32(VIR_EVENT_HANDLE_ERROR.rawValue) }
        if ready & EPOLLHUP.rawValue != 0 { events |= Int32(VIR_EVENT_HANDLE_HANGUP.rawValue) }
        guard events != 0 else { return }
        watch.callback(id, watch.fd, events, watch.opaque)
    }

    /// Calls the timer's callback if it is still set (it may have been changed or removed since it fired).
    private func dispatchTimer(_ id: Int32) {
        // Its descriptor is read under the lock: a removal closes it under the lock, and the number may be
        // given to another descriptor at once.
        let fired = registry.withLock { registry -> Timer? in
            guard let timer = registry.timers[id] else { return nil }
            var expirations: UInt64 = 0
            guard read(timer.fd, &expirations, MemoryLayout<UInt64>.size) == MemoryLayout<UInt64>.size,
                timer.frequency >= 0
            else { return nil }
            return timer
        }
        if let fired { fired.callback(id, fired.opaque) }
    }
}

/// Why Fencegate's event loop for libvirt could not be set up.
struct LibvirtEventLoopError: Error, CustomStringConvertible {
    var operation: String
    var errno: Int32

    var description: String { "\(operation) failed: \(String(cString: strerror(errno)))" }
}

// The functions libvirt calls (`virEventRegisterImpl`): global, so that no isolation is inferred for them.

private let libvirtAddHandle: virEventAddHandleFunc = { fd, events, callback, opaque, free in
    guard let callback, let loop = LibvirtEventLoop.shared else { return -1 }
    return loop.addWatch(fd: fd, events: events, callback: callback, opaque: opaque, free: free)
}

private let libvirtUpdateHandle: virEventUpdateHandleFunc = { id, events in
    LibvirtEventLoop.shared?.updateWatch(id, events: events)
}

private let libvirtRemoveHandle: virEventRemoveHandleFunc = { id in
    LibvirtEventLoop.shared?.removeWatch(id) ?? -1
}

private let libvirtAddTimeout: virEventAddTimeoutFunc = { frequency, callback, opaque, free in
    guard let callback, let loop = LibvirtEventLoop.shared else { return -1 }
    return loop.addTimer(frequency: frequency, callback: callback, opaque: opaque, free: free)
}

private let libvirtUpdateTimeout: virEventUpdateTimeoutFunc = { id, frequency in
    LibvirtEventLoop.shared?.updateTimer(id, frequency: frequency)
}

private let libvirtRemoveTimeout: virEventRemoveTimeoutFunc = { id in
    LibvirtEventLoop.shared?.removeTimer(id) ?? -1
}
