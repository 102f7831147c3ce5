import FoundationEssentials
import Locking
public import Logging
import Synchronization

/// The hypervisor behind one libvirt URI, over shared connections that are re-opened when they drop.
///
/// Concurrent calls sharing one libvirtd connection were measured to be delayed here (five `destroy`s of
/// different QEMU domains: one or two finished 2 s after the others in 4 of 6 rounds; with a connection each,
/// in none), so a call takes an idle connection, and a new one is opened when all are busy, up to `maximumConnections` (16 by default); beyond that, calls share the
/// least busy. Connections stay open for the next burst. The test driver (`test:///…`) keeps its world inside
/// a connection, so it always has exactly one.
///
/// Before each call the connection is checked (`virConnectIsAlive`, and the close callback's flag); a dropped
/// one is re-opened. A call that fails with a connection error marks it dropped, so the next call re-opens it;
/// while libvirt cannot be reached, every call throws `FenceError.hypervisorUnavailable`.
public final class LibvirtHypervisor: Hypervisor, @unchecked Sendable {
    // @unchecked: `slots` and `opening` are only touched with `condition` locked.
    public let uri: String
    private let logger: Logger
    /// The most connections this hypervisor opens.
    public let maximumConnections: Int

    private struct Slot {
        var connection: LibvirtConnection?
        var callsInFlight = 0
    }

    private let condition = ThreadCondition()
    private var slots: [Slot] = []
    /// True while one call opens a connection. Opens are never concurrent: when libvirtd accepts and then
    /// hangs, the calls that need a connection wait for the one open instead of each opening another socket.
    private var opening = false
    /// Called after lifecycle events, which are observed on the connection in slot 0 (the test driver's
    /// world; for other drivers, one connection is enough to hear every domain's events) once there is an
    /// observer. A lock of their own: libvirt's event thread must never wait on `condition`, which is held
    /// while a dropped connection is closed.
    private let changeObservers = Locked<[@Sendable () -> Void]>([])
    /// Set once the warning that libvirt runs on its default event loop has been logged.
    private let warnedOfEventLoop = Atomic<Bool>(false)

    /// - Parameter maximumConnections: connections to spread concurrent calls over (the test driver: one).
    public init(uri: String, logger: Logger, maximumConnections: Int = 16) {
        self.uri = uri
        self.logger = logger
        self.maximumConnections = uri.hasPrefix("test:") ? 1 : max(1, maximumConnections)
    }

    /// Connections opened so far (some may have dropped since).
    public var openConnections: Int {
        condition.lock()
        defer { condition.unlock() }
        return slots.filter { $0.connection != nil }.count
    }

    /// A live connection for one call, opening one if needed (blocking). Hand the index back with `release(_:)`.
    ///
    /// Takes an idle live connection; else, while another call opens one, waits for it and looks again;
    /// else opens one in a free slot, or a new slot if there is room; else shares the least busy live one.
    private func acquire() throws(FenceError) -> (index: Int, connection: LibvirtConnection) {
        condition.lock()
        var chosen: Int
        while true {
            if let idle = takeIdleSlot() {
                condition.unlock()
                return idle
            }
            if opening {
                condition.wait()
                continue
            }
            if let free = slots.indices.first(where: { slots[$0].callsInFlight == 0 }) {
                chosen = free
            } else if slots.count < maximumConnections {
                slots.append(Slot())
                chosen = slots.count - 1
            } else {
                chosen = 0
                for index in slots.indices where slots[index].callsInFlight < slots[chosen].callsInFlight {
                    chosen = index
                }
                if let shared = slots[chosen].connection, shared.isAlive {
                    slots[chosen].callsInFlight += 1
                    condition.unlock()
                    return (chosen, shared)
                }
            }
            break
        }
        if slots[chosen].connection != nil {
            logger.warning("hypervisor connection lost; reconnecting", metadata: ["hypervisor.uri": "\(uri)"])
            slots[chosen].connection = nil
        }
        slots[chosen].callsInFlight += 1
        opening = true
        condition.unlock()

        let result = Result { () throws(LibvirtError) in try LibvirtConnection(uri: uri) }
        condition.lock()
        opening = false
        if case .success(let connection) = result { slots[chosen].connection = connection }
        condition.broadcast()
        condition.unlock()
        switch result {
        case .success(let connection):
            logger.debug("hypervisor connection opened", metadata: ["hypervisor.uri": "\(uri)", "slot": "\(chosen)"])
            if let failure = LibvirtRuntime.eventLoopFailure,
                !warnedOfEventLoop.exchange(true, ordering: .relaxed)
            {
                logger.warning(
                    "libvirt runs on its default event loop, which costs more per call",
                    metadata: ["reason": "\(failure)"]
                )
            }
            if chosen == 0, changeObservers.withLock({ !$0.isEmpty }) {
                observeLifecycle(on: connection)
                notifyChanges()  // what changed while there was no connection was not reported
            }
            return (chosen, connection)
        case .failure(let error):
            release(chosen)
            throw FenceError.hypervisorUnavailable(uri: uri, reason: error.message)
        }
    }

    public func observeChanges(_ observer: @escaping @Sendable () -> Void) {
        let first = changeObservers.withLock { observers in
            observers.append(observer)
            return observers.count == 1
        }
        guard first else { return }
        // The first observer: hear the events of the connection already open in slot 0, if there is one.
        condition.lock()
        let open = slots.first?.connection
        condition.unlock()
        if let open { observeLifecycle(on: open) }
    }

    private func observeLifecycle(on connection: LibvirtConnection) {
        if !connection.observeLifecycle({ [weak self] in self?.notifyChanges() }) {
            logger.debug("hypervisor reports no domain events", metadata: ["hypervisor.uri": "\(uri)"])
        }
    }

    private func notifyChanges() {
        for observer in changeObservers.withLock({ $0 }) { observer() }
    }

    private func release(_ index: Int) {
        condition.lock()
        slots[index].callsInFlight -= 1
        condition.unlock()
    }

    /// Runs `body` on a live connection; a connection failure marks that connection dropped and is rethrown
    /// as `FenceError.hypervisorUnavailable`.
    func withConnection<T>(_ body: (LibvirtConnection) throws -> T) throws -> T {
        let (index, connection) = try acquire()
        defer { release(index) }
        return try call(body, on: connection)
    }

    /// An idle live connection, taken for one call (hand the index back with `release(_:)`); nil if none.
    /// Call with `condition` locked.
    private func takeIdleSlot() -> (index: Int, connection: LibvirtConnection)? {
        guard
            let idle = slots.indices.first(where: {
                slots[$0].callsInFlight == 0 && slots[$0].connection?.isAlive == true
            })
        else { return nil }
        slots[idle].callsInFlight += 1
        return (idle, slots[idle].connection!)
    }

    public func withIdleConnection<T>(_ body: (any DomainReader) throws -> T) throws -> T? {
        condition.lock()
        let idle = takeIdleSlot()
        condition.unlock()
        guard let (index, connection) = idle else { return nil }
        defer { release(index) }
        return try call({ try body(ConnectionReader(connection: $0)) }, on: connection)
    }

    public func withReader<T>(_ body: (any DomainReader) throws -> T) throws -> T {
        try withConnection { try body(ConnectionReader(connection: $0)) }
    }

    /// Runs `body` on `connection`; a connection failure marks it dropped and is rethrown as
    /// `FenceError.hypervisorUnavailable`.
    private func call<T>(_ body: (LibvirtConnection) throws -> T, on connection: LibvirtConnection) throws -> T {
        do {
            return try body(connection)
        } catch let error as LibvirtError where error.isConnectionFailure {
            connection.health.markDropped()
            logger.warning(
                "hypervisor call failed on the connection; it will be re-opened",
                metadata: ["hypervisor.uri": "\(uri)", "libvirt.error": "\(error)"]
            )
            throw FenceError.hypervisorUnavailable(uri: uri, reason: error.message)
        }
    }

    public func domain(_ target: DomainTarget) throws -> DomainInfo {
        try withConnection { try ConnectionReader(connection: $0).find(target).info() }
    }

    public func domains() throws -> [DomainInfo] {
        try withConnection { connection in
            var result: [DomainInfo] = []
            for domain in try connection.allDomains() {
                do {
                    result.append(try LibvirtFoundDomain(domain, on: connection).info())
                } catch let error as LibvirtError where error.code == .noDomain {
                    continue  // undefined between listing and reading it
                }
            }
            return result.sorted { $0.name.lowercased() < $1.name.lowercased() }
        }
    }

    public func state(ofDomain uuid: String) throws -> DomainState? {
        try withConnection { try ConnectionReader(connection: $0).state(ofDomain: uuid) }
    }

    public func destroy(domain uuid: String) throws {
        try withConnection { connection in try connection.domain(uuid: uuid).destroy() }
    }

    public func start(domain uuid: String) throws {
        try withConnection { connection in try connection.domain(uuid: uuid).create() }
    }

    public func shutdown(domain uuid: String) throws {
        try withConnection { connection in try connection.domain(uuid: uuid).shutdown() }
    }

    public func reboot(domain uuid: String) throws {
        try withConnection { connection in try connection.domain(uuid: uuid).reboot() }
    }

    public func injectNMI(domain uuid: String) throws {
        try withConnection { connection in try connection.domain(uuid: uuid).injectNMI() }
    }

    public func definition(ofDomain uuid: String) throws -> String {
        try withConnection { connection in try connection.domain(uuid: uuid).xmlDescription() }
    }

    public func startTransient(definition: String) throws {
        try withConnection { connection in _ = try connection.createTransient(xml: definition) }
    }

    public func addresses(ofDomain uuid: String) throws -> [String] {
        try withConnection { connection in
            let domain = try connection.domain(uuid: uuid)
            // Not the guest agent (see the protocol): sources the host answers alone.
            for source in [LibvirtDomain.AddressSource.lease, .arp] {
                do {
                    let addresses = try domain.interfaceAddresses(from: source)
                    if !addresses.isEmpty { return addresses }
                } catch let error as LibvirtError where !error.isConnectionFailure && error.code != .noDomain {
                    continue  // this source is not available for this domain (no libvirt network)
                }
            }
            return []
        }
    }

    public func checkConnection() throws {
        try withConnection { _ in }
    }

    /// Defines (or redefines) a persistent domain; for tests that change a definition under the service.
    package func defineDomain(xml: String) throws {
        try withConnection { connection in _ = try connection.define(xml: xml) }
    }

    /// The domain's maximum memory in KiB; for tests that tell which definition a domain was started from.
    package func maxMemoryKiB(ofDomain uuid: String) throws -> UInt {
        try withConnection { connection in try connection.domain(uuid: uuid).maxMemoryKiB() }
    }
}

/// The reads of one connection, taken for the call: what `LibvirtHypervisor` reads on any connection, and
/// what `withIdleConnection` and `withReader` hand out.
private struct ConnectionReader: DomainReader {
    let connection: LibvirtConnection

    /// A lookup that fails on the connection marks it dropped, as its reads do (`LibvirtFoundDomain`): a caller
    /// may report the failure without throwing it through `LibvirtHypervisor.call`.
    func find(_ target: DomainTarget) throws -> any FoundDomain {
        do {
            let domain =
                if let uuid = target.uuid {
                    try connection.domain(uuid: uuid)
                } else {
                    try connection.domain(named: target.text)
                }
            return try LibvirtFoundDomain(domain, on: connection)
        } catch {
            throw connection.health.noting(error)
        }
    }

    func state(ofDomain uuid: String) throws -> DomainState? {
        do {
            return try connection.domain(uuid: uuid).state()
        } catch  where error.code == .noDomain {
            return nil
        }
    }
}

/// A domain handle a lookup returned, with its name and UUID (which libvirt keeps in the handle: reading
/// them calls no daemon). A read that fails on the connection marks it dropped, as a call on it would: a
/// caller may keep such a failure to report later instead of throwing it through `withConnection`.
private struct LibvirtFoundDomain: FoundDomain {
    let domain: LibvirtDomain
    let health: ConnectionHealth
    let name: String
    let uuid: String

    init(_ domain: LibvirtDomain, on connection: LibvirtConnection) throws(LibvirtError) {
        self.domain = domain
        self.health = connection.health
        self.name = try domain.name()
        self.uuid = try domain.uuid()
    }

    func info() throws -> DomainInfo {
        DomainInfo(name: name, uuid: uuid, state: try currentState(), isPersistent: try isPersistent())
    }

    func isPersistent() throws -> Bool {
        do {
            return try domain.isPersistent()
        } catch {
            throw health.noting(error)
        }
    }

    func state() throws -> DomainState? {
        do {
            return try currentState()
        } catch  where error.code == .noDomain {
            return nil
        }
    }

    private func currentState() throws(LibvirtError) -> DomainState {
        do {
            return try domain.state()
        } catch {
            throw health.noting(error)
        }
    }
}
