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
public final class LibvirtHypervisor: Hypervisor {
    public let uri: String
    private let logger: Logger
    /// The most connections this hypervisor opens.
    public let maximumConnections: Int

    private struct Slot {
        var connection: LibvirtConnection?
        var callsInFlight = 0
    }

    private let slots = Mutex<[Slot]>([])

    /// - Parameter maximumConnections: connections to spread concurrent calls over (the test driver: one).
    public init(uri: String, logger: Logger, maximumConnections: Int = 16) {
        self.uri = uri
        self.logger = logger
        self.maximumConnections = uri.hasPrefix("test:") ? 1 : max(1, maximumConnections)
    }

    /// Connections opened so far (some may have dropped since).
    public var openConnections: Int { slots.withLock { $0.filter { $0.connection != nil }.count } }

    /// Takes a slot for one call: an idle one with a live connection, else a new one if there is room, else
    /// the least busy. Returns its connection, or nil if the caller must open one (outside the lock).
    private func takeSlot() -> (index: Int, connection: LibvirtConnection?) {
        slots.withLock { slots in
            var chosen: Int
            if let idle = slots.indices.first(where: { slots[$0].callsInFlight == 0 && slots[$0].connection?.isAlive == true }) {
                chosen = idle
            } else if slots.count < maximumConnections {
                slots.append(Slot())
                chosen = slots.count - 1
            } else {
                chosen = 0
                for index in slots.indices where slots[index].callsInFlight < slots[chosen].callsInFlight { chosen = index }
            }
            slots[chosen].callsInFlight += 1
            if let connection = slots[chosen].connection {
                if connection.isAlive { return (chosen, connection) }
                logger.warning("hypervisor connection lost; reconnecting", metadata: ["hypervisor.uri": "\(uri)"])
                slots[chosen].connection = nil
            }
            return (chosen, nil)
        }
    }

    /// A live connection for one call, opening one if needed (blocking). Hand the index back with `release(_:)`.
    private func acquire() throws(FenceError) -> (index: Int, connection: LibvirtConnection) {
        let (index, existing) = takeSlot()
        if let existing { return (index, existing) }
        do throws(LibvirtError) {
            let opened = try LibvirtConnection(uri: uri)
            let connection = slots.withLock { slots in
                // Another call may have opened this slot's connection meanwhile; keep one.
                if let other = slots[index].connection, other.isAlive { return other }
                slots[index].connection = opened
                return opened
            }
            logger.debug("hypervisor connection opened", metadata: ["hypervisor.uri": "\(uri)", "slot": "\(index)"])
            return (index, connection)
        } catch {
            release(index)
            throw FenceError.hypervisorUnavailable(uri: uri, reason: error.message)
        }
    }

    private func release(_ index: Int) {
        slots.withLock { $0[index].callsInFlight -= 1 }
    }

    /// Runs `body` on a live connection; a connection failure marks that connection dropped and is rethrown
    /// as `FenceError.hypervisorUnavailable`.
    func withConnection<T>(_ body: (LibvirtConnection) throws -> T) throws -> T {
        let (index, connection) = try acquire()
        defer { release(index) }
        do {
            return try body(connection)
        } catch let error as LibvirtError where error.isConnectionFailure {
            connection.health.markDropped()
            logger.warning(
                "hypervisor call failed on the connection; it will be re-opened",
                metadata: ["hypervisor.uri": "\(uri)", "libvirt.error": "\(error)"])
            throw FenceError.hypervisorUnavailable(uri: uri, reason: error.message)
        }
    }

    public func domain(_ target: DomainTarget) throws -> DomainInfo {
        try withConnection { connection in
            let domain =
                if let uuid = target.uuid {
                    try connection.domain(uuid: uuid)
                } else {
                    try connection.domain(named: target.text)
                }
            return try Self.info(domain)
        }
    }

    public func domains() throws -> [DomainInfo] {
        try withConnection { connection in
            var result: [DomainInfo] = []
            for domain in try connection.allDomains() {
                do {
                    result.append(try Self.info(domain))
                } catch let error as LibvirtError where error.code == .noDomain {
                    continue  // undefined between listing and reading it
                }
            }
            return result.sorted { $0.name.lowercased() < $1.name.lowercased() }
        }
    }

    public func state(ofDomain uuid: String) throws -> DomainState? {
        try withConnection { connection -> DomainState? in
            do {
                return try connection.domain(uuid: uuid).state()
            } catch let error as LibvirtError where error.code == .noDomain {
                return nil
            }
        }
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

    private static func info(_ domain: LibvirtDomain) throws(LibvirtError) -> DomainInfo {
        DomainInfo(
            name: try domain.name(), uuid: try domain.uuid(), state: try domain.state(),
            isPersistent: try domain.isPersistent())
    }
}
