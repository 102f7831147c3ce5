public import Logging
import Synchronization

/// The hypervisor behind one libvirt URI, over one shared connection that is re-opened when it drops.
///
/// The connection is opened on first use. Before each call it is checked (`virConnectIsAlive`, and the
/// close callback's flag); a dropped one is re-opened. A call that fails with a connection error marks it
/// dropped, so the next call re-opens it; while libvirt cannot be reached, every call throws
/// `FenceError.hypervisorUnavailable`.
///
/// Note: the test driver (`test:///…`) keeps its world inside the connection, so a re-open starts afresh.
public final class LibvirtHypervisor: Hypervisor {
    public let uri: String
    private let logger: Logger
    private let current = Mutex<LibvirtConnection?>(nil)

    public init(uri: String, logger: Logger) {
        self.uri = uri
        self.logger = logger
    }

    /// The live connection, opening or re-opening it if needed. Blocks while opening.
    func connection() throws(FenceError) -> LibvirtConnection {
        try current.withLock { (slot: inout LibvirtConnection?) throws(FenceError) -> LibvirtConnection in
            if let connection = slot {
                if connection.isAlive { return connection }
                logger.warning("hypervisor connection lost; reconnecting", metadata: ["hypervisor.uri": "\(uri)"])
                slot = nil
            }
            do throws(LibvirtError) {
                let connection = try LibvirtConnection(uri: uri)
                slot = connection
                logger.debug("hypervisor connection opened", metadata: ["hypervisor.uri": "\(uri)"])
                return connection
            } catch {
                throw FenceError.hypervisorUnavailable(uri: uri, reason: error.message)
            }
        }
    }

    /// Runs `body` on the live connection; a connection failure marks the connection dropped and is rethrown
    /// as `FenceError.hypervisorUnavailable`.
    func withConnection<T>(_ body: (LibvirtConnection) throws -> T) throws -> T {
        let connection = try connection()
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

    public func definition(ofDomain uuid: String) throws -> String {
        try withConnection { connection in try connection.domain(uuid: uuid).xmlDescription() }
    }

    public func startTransient(definition: String) throws {
        try withConnection { connection in _ = try connection.createTransient(xml: definition) }
    }

    public func checkConnection() throws {
        _ = try connection()
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
