import FenceCore
import Logging
import ServiceLifecycle

/// Deletes the audit rows the retention no longer keeps (`FenceService.deleteExpiredAuditRows`): once at
/// start, then every `interval`. A pass that fails (a full or read-only disk) is logged and made again at the
/// next one.
struct AuditRetentionPasses: Service {
    let service: FenceService
    var interval: Duration = .seconds(3600)
    let logger: Logger

    /// False when every row is kept forever: then no pass is needed.
    var isNeeded: Bool {
        let retention = service.configuration.auditRetention
        return retention.changes != nil || retention.others != nil
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let deleted = try await cancelWhenGracefulShutdown { try await service.deleteExpiredAuditRows() }
                if deleted > 0 {
                    logger.notice(
                        "deleted audit rows older than the retention",
                        metadata: [
                            "audit.rows_deleted": "\(deleted)",
                            "audit.retention": "\(service.configuration.auditRetention)",
                        ]
                    )
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning(
                    "could not delete the audit rows older than the retention; trying again in an hour",
                    metadata: ["error": "\(error)"]
                )
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
