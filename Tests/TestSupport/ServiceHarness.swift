public import FenceCore
import Foundation
public import Logging
public import Store

/// A fence service on its own libvirt test-driver world (the cluster fixture) and its own audit file.
public struct ServiceHarness: Sendable {
    public let directory: TemporaryDirectory
    public let libvirt: LibvirtHypervisor
    public let faulty: FaultyHypervisor
    public let store: AuditStore
    public let service: FenceService

    /// Quiet: failures show in the assertions; raise the level to debug a test.
    public static let logger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()
    public static let origin = RequestOrigin(frontEnd: .cli, requester: "tester", clientAddress: "198.18.0.7")

    public init(
        uri: String = Fixtures.clusterURI,
        configuration: FenceService.Configuration = .init(),
        busyTimeout: Duration = AuditStore.defaultBusyTimeout,
        databasePath: String? = nil,
        reserve: AuditSpaceReserve? = nil
    ) async throws {
        directory = try TemporaryDirectory()
        libvirt = LibvirtHypervisor(uri: uri, logger: Self.logger)
        faulty = FaultyHypervisor(libvirt)
        store = try await AuditStore.open(
            path: databasePath ?? directory.file("audit.db"),
            busyTimeout: busyTimeout,
            syncsCompletionsLater: true,  // as `serve` opens it
            reserve: reserve,
            logger: Self.logger
        )
        service = FenceService(hypervisor: faulty, store: store, configuration: configuration, logger: Self.logger)
    }

    public func perform(
        _ action: FenceAction,
        _ target: String,
        timeout: Duration? = nil
    ) async throws(FenceError) -> FenceOutcome {
        try await service.perform(
            FenceRequest(action: action, target: DomainTarget(target), origin: Self.origin, timeout: timeout)
        )
    }

    /// Starts an `off` of `name` whose destroy hangs in the hypervisor, and returns once it is blocked there.
    /// Open the returned gate to let the destroy proceed.
    public func offHungInDestroy(_ name: String) async throws -> (operation: Task<FenceOutcome, any Error>, gate: Gate)
    {
        let gate = Gate()
        faulty.inject(.hang(gate), into: .destroy, for: Fixtures.uuids[name]!)
        let operation = Task { try await perform(.off, name) }
        try await waitUntil("the off of \(name) is blocked inside destroy") { gate.arrived == 1 }
        return (operation, gate)
    }

    /// The domain's state straight from libvirt, bypassing the service.
    public func state(_ name: String) throws -> DomainState? {
        try libvirt.state(ofDomain: Fixtures.uuids[name]!)
    }

    /// Every audit row, oldest first.
    public func rows() async throws -> [AuditRecord] {
        try await store.query(AuditQuery(limit: 1000)).records.reversed()
    }

    public func row(_ id: Int64) async throws -> AuditRecord? {
        try await store.operation(id: id)
    }
}
