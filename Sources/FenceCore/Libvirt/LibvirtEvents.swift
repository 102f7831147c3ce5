internal import CLibvirt

/// Watches and timers registered through libvirt's public event API (`virEventAddHandle`, `virEventAddTimeout`
/// and the rest), on whichever loop libvirt runs, with Swift closures: how the loop's own tests reach it the
/// way libvirt does.
package enum LibvirtEvents {
    /// libvirt's event flags (`virEventHandleType`).
    package static let readable = Int32(VIR_EVENT_HANDLE_READABLE.rawValue)
    package static let writable = Int32(VIR_EVENT_HANDLE_WRITABLE.rawValue)
    package static let error = Int32(VIR_EVENT_HANDLE_ERROR.rawValue)
    package static let hangUp = Int32(VIR_EVENT_HANDLE_HANGUP.rawValue)

    /// Watches `fd` for `events`; `ready` gets the events reported, `freed` runs once the watch is removed.
    /// Returns the watch's id, or nil if the loop refused it.
    package static func addWatch(
        fd: Int32,
        events: Int32,
        ready: @escaping @Sendable (_ events: Int32) -> Void,
        freed: @escaping @Sendable () -> Void
    ) -> Int32? {
        registered(EventClosures(ready: ready, freed: freed)) { virEventAddHandle(fd, events, watchReady, $0, $1) }
    }

    package static func updateWatch(_ id: Int32, events: Int32) {
        virEventUpdateHandle(id, events)
    }

    /// True if there was such a watch.
    package static func removeWatch(_ id: Int32) -> Bool {
        virEventRemoveHandle(id) == 0
    }

    /// A timer firing every `frequency` ms (0: at every turn of the loop; -1: not yet); `fired` runs at each
    /// firing, `freed` once it is removed. Returns its id, or nil if the loop refused it.
    package static func addTimer(
        frequency: Int32,
        fired: @escaping @Sendable () -> Void,
        freed: @escaping @Sendable () -> Void
    ) -> Int32? {
        registered(EventClosures(ready: { _ in fired() }, freed: freed)) {
            virEventAddTimeout(frequency, timerFired, $0, $1)
        }
    }

    package static func updateTimer(_ id: Int32, frequency: Int32) {
        virEventUpdateTimeout(id, frequency)
    }

    /// True if there was such a timer.
    package static func removeTimer(_ id: Int32) -> Bool {
        virEventRemoveTimeout(id) == 0
    }

    /// Hands `closures` to libvirt through `add` (given the context and its free function); its id, or nil if
    /// refused (the closures are then released here).
    private static func registered(
        _ closures: EventClosures,
        _ add: (UnsafeMutableRawPointer, virFreeCallback) -> Int32
    ) -> Int32? {
        guard LibvirtRuntime.failure == nil else { return nil }
        let box = Unmanaged.passRetained(closures).toOpaque()
        let id = add(box, releaseEventClosures)
        guard id >= 0 else {
            virResetLastError()
            Unmanaged<EventClosures>.fromOpaque(box).release()
            return nil
        }
        return id
    }
}

/// What one registration calls; owned by libvirt from registration until its free function.
private final class EventClosures: Sendable {
    let ready: @Sendable (Int32) -> Void
    let freed: @Sendable () -> Void

    init(ready: @escaping @Sendable (Int32) -> Void, freed: @escaping @Sendable () -> Void) {
        self.ready = ready
        self.freed = freed
    }
}

private let watchReady: virEventHandleCallback = { _, _, events, opaque in
    if let opaque { Unmanaged<EventClosures>.fromOpaque(opaque).takeUnretainedValue().ready(events) }
}

private let timerFired: virEventTimeoutCallback = { _, opaque in
    if let opaque { Unmanaged<EventClosures>.fromOpaque(opaque).takeUnretainedValue().ready(0) }
}

private let releaseEventClosures: virFreeCallback = { opaque in
    guard let opaque else { return }
    let closures = Unmanaged<EventClosures>.fromOpaque(opaque).takeRetainedValue()
    closures.freed()
}
