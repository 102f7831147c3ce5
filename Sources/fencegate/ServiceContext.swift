import FenceCore
import FoundationEssentials
import Glibc
import Logging
import Store

/// The fence service and its parts, built the same way for every subcommand.
struct ServiceContext {
    let service: FenceService
    let store: AuditStore
    let logger: Logger

    /// Opens the audit log (creating its directory with mode 0700 if needed), marks operations left
    /// `started` by dead processes as interrupted, and sets up the hypervisor (connected on first use).
    /// - Parameter syncsCompletionsLater: see `AuditStore.open`; for `serve`, whose store lives until it stops.
    /// - Parameter reserve: space kept for fences in the audit log (`AuditSpaceReserve`); for `serve`.
    static func open(
        _ options: GlobalOptions,
        configuration: FenceService.Configuration = .init(),
        syncsCompletionsLater: Bool = false,
        reserve: AuditSpaceReserve? = nil,
        logger: Logger
    ) async throws -> ServiceContext {
        let path = options.resolvedDatabase
        let store: AuditStore
        do {
            let directory = path.parentPath
            if !directory.isEmpty {
                try FileManager.default.createDirectory(
                    atPath: directory,
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700]
                )
            }
            store = try await AuditStore.open(
                path: path,
                syncsCompletionsLater: syncsCompletionsLater,
                reserve: reserve,
                logger: logger
            )
            try await store.recoverInterrupted()
        } catch let error as AuditStoreError {
            throw CLIFailure.auditUnavailable("\(error)")
        } catch {
            throw CLIFailure.auditUnavailable("cannot open the audit database \(path): \(fileErrorText(error))")
        }
        let hypervisor = LibvirtHypervisor(uri: options.resolvedURI, logger: logger)
        let service = FenceService(hypervisor: hypervisor, store: store, configuration: configuration, logger: logger)
        return ServiceContext(service: service, store: store, logger: logger)
    }

    /// The audit log for queries: read-write as `open` does, or read-only if the database exists but cannot be
    /// written (its filesystem turned read-only, a copy on read-only media), so the log can still be read.
    static func openAuditLogForQueries(_ options: GlobalOptions, logger: Logger) async throws -> AuditStore {
        let path = options.resolvedDatabase
        guard FileManager.default.fileExists(atPath: path), access(path, W_OK) != 0 else {
            return try await open(options, logger: logger).store
        }
        logger.warning("the audit database cannot be written; reading it only", metadata: ["audit.path": "\(path)"])
        do {
            return try await AuditStore.open(path: path, readOnly: true, logger: logger)
        } catch {
            throw CLIFailure.auditUnavailable("\(error)")
        }
    }
}
