internal import CLibvirt
import Locking
import Synchronization

/// One open libvirt connection; owns the `virConnectPtr` and closes it in `deinit`.
///
/// `@unchecked Sendable`: libvirt connections are thread-safe (any thread may call any API on a shared
/// connection), and the only mutable Swift state is the atomic `health`.
final class LibvirtConnection: @unchecked Sendable {
    private let handle: virConnectPtr
    /// The URI the connection was opened with.
    let uri: String
    /// Set by libvirt's close callback (keepalive timeout, EOF, I/O error) or by a failing call.
    let health: ConnectionHealth
    private let closeCallbackRegistered: Bool
    /// libvirt's id of the lifecycle callback, once registered.
    private let lifecycleCallback = Locked<Int32?>(nil)

    /// Counts connections whose `virConnectClose` in `deinit` left references behind: a leaked domain handle.
    package static let leakedReferences = Atomic<Int>(0)

    /// Opens a read-write connection. Calls `virConnectOpen`, then enables keepalive (5 s × 3) and registers
    /// the close callback where the driver supports them.
    /// - Throws: `LibvirtError` if the hypervisor cannot be reached.
    init(uri: String) throws(LibvirtError) {
        if let failure = LibvirtRuntime.failure {
            throw LibvirtError(
                code: .internalError,
                subsystem: 0,
                message: "libvirt could not be initialised: \(failure)",
                operation: "virInitialize"
            )
        }
        guard let handle = virConnectOpen(uri) else {
            throw LibvirtError.last(operation: "virConnectOpen(\(uri))")
        }
        self.handle = handle
        self.uri = uri
        self.health = ConnectionHealth()
        // Keepalive is only meaningful for remote connections; local drivers answer "unsupported" (1) or -1.
        if virConnectSetKeepAlive(handle, 5, 3) < 0 { virResetLastError() }
        let opaque = Unmanaged.passRetained(health).toOpaque()
        if virConnectRegisterCloseCallback(handle, connectionClosed, opaque, releaseConnectionHealth) == 0 {
            closeCallbackRegistered = true
        } else {
            virResetLastError()
            Unmanaged<ConnectionHealth>.fromOpaque(opaque).release()
            closeCallbackRegistered = false
        }
    }

    deinit {
        if let id = lifecycleCallback.withLock({ $0 }), virConnectDomainEventDeregisterAny(handle, id) < 0 {
            virResetLastError()
        }
        if closeCallbackRegistered, virConnectUnregisterCloseCallback(handle, connectionClosed) < 0 {
            virResetLastError()
        }
        if virConnectClose(handle) > 0 {
            Self.leakedReferences.add(1, ordering: .relaxed)
        }
    }

    /// Calls `changed` (on libvirt's event thread) after each lifecycle event of a domain of this connection:
    /// defined, undefined, started, suspended, resumed, stopped, shut down… until the connection is closed.
    /// Calls `virConnectDomainEventRegisterAny`; returns false where the driver has no events.
    func observeLifecycle(_ changed: @escaping @Sendable () -> Void) -> Bool {
        guard lifecycleCallback.withLock({ $0 }) == nil else { return true }  // once per connection
        let observer = LifecycleObserver(changed)
        let opaque = Unmanaged.passRetained(observer).toOpaque()
        let id = virConnectDomainEventRegisterAny(
            handle,
            nil,
            Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue),
            unsafeBitCast(lifecycleEvent, to: virConnectDomainEventGenericCallback.self),
            opaque,
            releaseLifecycleObserver
        )
        guard id >= 0 else {
            virResetLastError()
            Unmanaged<LifecycleObserver>.fromOpaque(opaque).release()
            return false
        }
        lifecycleCallback.withLock { $0 = id }
        return true
    }

    /// True unless the connection was reported closed. Calls `virConnectIsAlive`.
    var isAlive: Bool {
        guard !health.isDropped else { return false }
        let alive = virConnectIsAlive(handle)
        if alive < 0 { virResetLastError() }
        return alive == 1
    }

    /// Every defined domain, running or not. Calls `virConnectListAllDomains`.
    func allDomains() throws(LibvirtError) -> [LibvirtDomain] {
        var list: UnsafeMutablePointer<virDomainPtr?>?
        let count = virConnectListAllDomains(handle, &list, 0)
        guard count >= 0, let list else { throw LibvirtError.last(operation: "virConnectListAllDomains") }
        defer { free(list) }
        return (0..<Int(count)).compactMap { index in
            list[index].map { LibvirtDomain(handle: $0, connection: self) }
        }
    }

    /// The domain with this name. Calls `virDomainLookupByName`.
    func domain(named name: String) throws(LibvirtError) -> LibvirtDomain {
        guard let domain = virDomainLookupByName(handle, name) else {
            throw LibvirtError.last(operation: "virDomainLookupByName")
        }
        return LibvirtDomain(handle: domain, connection: self)
    }

    /// The domain with this UUID (canonical text form). Calls `virDomainLookupByUUIDString`.
    func domain(uuid: String) throws(LibvirtError) -> LibvirtDomain {
        guard let domain = virDomainLookupByUUIDString(handle, uuid) else {
            throw LibvirtError.last(operation: "virDomainLookupByUUIDString")
        }
        return LibvirtDomain(handle: domain, connection: self)
    }

    /// Starts a transient domain from XML. Calls `virDomainCreateXML`.
    @discardableResult
    func createTransient(xml: String) throws(LibvirtError) -> LibvirtDomain {
        guard let domain = virDomainCreateXML(handle, xml, 0) else {
            throw LibvirtError.last(operation: "virDomainCreateXML")
        }
        return LibvirtDomain(handle: domain, connection: self)
    }

    /// Defines (or redefines) a persistent domain from XML. Calls `virDomainDefineXML`.
    @discardableResult
    func define(xml: String) throws(LibvirtError) -> LibvirtDomain {
        guard let domain = virDomainDefineXML(handle, xml) else {
            throw LibvirtError.last(operation: "virDomainDefineXML")
        }
        return LibvirtDomain(handle: domain, connection: self)
    }
}

/// Whether libvirt has told us that a connection is gone; shared with the C close callback.
final class ConnectionHealth: Sendable {
    private let dropped = Atomic<Bool>(false)

    var isDropped: Bool { dropped.load(ordering: .acquiring) }

    func markDropped() { dropped.store(true, ordering: .releasing) }

    /// `error`, after marking the connection dropped if the connection is what failed: for a failure reported
    /// later rather than thrown through `LibvirtHypervisor`'s call wrapper.
    func noting(_ error: LibvirtError) -> LibvirtError {
        if error.isConnectionFailure { markDropped() }
        return error
    }
}

/// libvirt's close callback: runs on the event-loop thread; only flips an atomic flag.
private let connectionClosed: virConnectCloseFunc = { _, _, opaque in
    guard let opaque else { return }
    Unmanaged<ConnectionHealth>.fromOpaque(opaque).takeUnretainedValue().markDropped()
}

/// libvirt's free callback for the close-callback context: balances the `passRetained` above.
private let releaseConnectionHealth: virFreeCallback = { opaque in
    guard let opaque else { return }
    Unmanaged<ConnectionHealth>.fromOpaque(opaque).release()
}

/// The closure a lifecycle callback calls; owned by libvirt (released by `releaseLifecycleObserver`).
final class LifecycleObserver: Sendable {
    let changed: @Sendable () -> Void

    init(_ changed: @escaping @Sendable () -> Void) {
        self.changed = changed
    }
}

/// libvirt's lifecycle callback (`virConnectDomainEventCallback`), on the event thread.
private let lifecycleEvent:
    @convention(c) (virConnectPtr?, virDomainPtr?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        _,
        _,
        _,
        opaque in
        if let opaque { Unmanaged<LifecycleObserver>.fromOpaque(opaque).takeUnretainedValue().changed() }
        return 0
    }

/// libvirt's free callback for the lifecycle observer: balances the `passRetained` of `observeLifecycle`.
private let releaseLifecycleObserver: virFreeCallback = { opaque in
    if let opaque { Unmanaged<LifecycleObserver>.fromOpaque(opaque).release() }
}
