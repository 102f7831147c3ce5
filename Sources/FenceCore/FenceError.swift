import FoundationEssentials
import Store

/// Why a fence request did not succeed. Every front end maps this one type to its own presentation.
public enum FenceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No domain with that name or UUID is defined.
    case domainNotFound(target: String)
    /// The hypervisor cannot be reached (connection refused, dropped, or not authorized).
    case hypervisorUnavailable(uri: String, reason: String)
    /// The audit log cannot be written, so the operation was refused and nothing was done.
    case auditUnavailable(reason: String)
    /// A query of the audit log ran longer than its time limit and was stopped; a narrower one may succeed.
    case auditQueryStopped(after: Duration)
    /// The operation did not finish in time. It is a failure: the domain's state is unknown.
    case timedOut(action: FenceAction, target: String, after: Duration)
    /// The hypervisor refused or failed the operation.
    case operationFailed(action: FenceAction, target: String, reason: String)
    /// Another operation on the domain is running and the request asked not to wait. Nothing was done.
    case domainBusy(target: String)
    /// The action asks the guest (graceful restart, NMI), and the domain is off. Nothing was done.
    case notRunning(action: FenceAction, target: String)
    /// The target cannot name a domain (empty, too long, control characters). Nothing was done.
    case invalidTarget(reason: String)
    /// The request's access policy does not allow it (a token's scope, fence_xvm's groups). Nothing was done.
    case refused(target: String, reason: String)
    /// The request's credentials are missing, malformed, unknown or revoked. Nothing was done.
    case unauthenticated(reason: String)
    /// The domain that sent this off or reboot is being fenced, or was fenced moments ago, by `operation`:
    /// a fence race it lost. Nothing was done.
    case requesterFenced(target: String, requester: String, operation: Int64)
    /// Cluster mode: as `requesterFenced`, decided by the cluster; the fence that won ran on `host`.
    case requesterFencedInCluster(target: String, requester: String, host: String)
    /// Cluster mode: the cluster cannot decide or act for the domain now (corosync unreachable, membership
    /// changing, the domain's host left and is not confirmed down, this partition not quorate, the executor
    /// left mid-request). Nothing was done, or, where the reason says so, the outcome is unknown.
    case clusterUnavailable(target: String, reason: String)

    /// A stable, machine-readable name for the kind of error (used in the audit log and APIs).
    public var code: String {
        switch self {
        case .domainNotFound: return "domain_not_found"
        case .hypervisorUnavailable: return "hypervisor_unavailable"
        case .auditUnavailable: return "audit_unavailable"
        case .auditQueryStopped: return "audit_query_stopped"
        case .timedOut: return "timed_out"
        case .operationFailed: return "operation_failed"
        case .domainBusy: return "domain_busy"
        case .notRunning: return "not_running"
        case .invalidTarget: return "invalid_target"
        case .refused: return "refused"
        case .unauthenticated: return "unauthenticated"
        case .requesterFenced, .requesterFencedInCluster: return "requester_fenced"
        case .clusterUnavailable: return "cluster_unavailable"
        }
    }

    public var description: String {
        switch self {
        case .domainNotFound(let target):
            return "domain '\(target)' not found"
        case .hypervisorUnavailable(let uri, let reason):
            return "hypervisor \(uri) unavailable: \(reason)"
        case .auditUnavailable(let reason):
            return "audit log unavailable, operation refused and nothing done: \(reason)"
        case .auditQueryStopped(let limit):
            return
                "the query of the audit log ran longer than \(limit.fenceSeconds) and was stopped; narrow it (since and until, domain, action, source, result, requester)"
        case .timedOut(let action, let target, let after):
            return
                "\(action.rawValue) of domain '\(target)' timed out after \(after.fenceSeconds); its state is unknown"
        case .operationFailed(let action, let target, let reason):
            return "\(action.rawValue) of domain '\(target)' failed: \(reason)"
        case .domainBusy(let target):
            return "another operation on domain '\(target)' is running; nothing was done"
        case .notRunning(let action, let target):
            return "\(action.rawValue) needs domain '\(target)' running, and it is off; nothing was done"
        case .invalidTarget(let reason):
            return reason
        case .refused(let target, let reason):
            return "request for domain '\(target)' refused: \(reason)"
        case .unauthenticated(let reason):
            return "authentication failed: \(reason)"
        case .requesterFenced(let target, let requester, let operation):
            return
                "refused: requester was fenced by operation \(operation) (domain '\(requester)' asked to fence '\(target)'; a fence race it lost)"
        case .requesterFencedInCluster(let target, let requester, let host):
            return
                "refused: requester was fenced by a request executed on \(host) (domain '\(requester)' asked to fence '\(target)'; a fence race it lost)"
        case .clusterUnavailable(let target, let reason):
            return "cluster cannot act on domain '\(target)': \(reason)"
        }
    }

    /// True for `.timedOut`.
    public var isTimeout: Bool {
        if case .timedOut = self { return true }
        return false
    }

    /// The one mapping from lower-level errors: libvirt's "no domain" becomes `.domainNotFound`, connection
    /// failures `.hypervisorUnavailable`, and anything else `.operationFailed` with the cause's text.
    public init(mapping error: any Error, action: FenceAction, target: String, uri: String) {
        switch error {
        case let error as FenceError:
            self = error
        case let error as LibvirtError where error.code == .noDomain:
            self = .domainNotFound(target: target)
        case let error as LibvirtError where error.isConnectionFailure:
            self = .hypervisorUnavailable(uri: uri, reason: error.message)
        case let error as LibvirtError:
            self = .operationFailed(action: action, target: target, reason: error.message)
        case let error as AuditStoreError:
            self = .auditUnavailable(reason: error.description)
        case let error as BlockingThreadPool.Saturated:
            self = .hypervisorUnavailable(uri: uri, reason: error.description)
        case let error as DetachedThread.StartFailure:
            self = .hypervisorUnavailable(uri: uri, reason: error.description)
        default:
            self = .operationFailed(action: action, target: target, reason: "\(error)")
        }
    }
}

extension Duration {
    /// The duration in seconds (fractions included): for JSON and `Date` arithmetic.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// "1.234 s", for messages.
    var fenceSeconds: String {
        let (seconds, attoseconds) = components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        let whole = milliseconds.magnitude
        return "\(milliseconds < 0 ? "-" : "")\(whole / 1000).\(zeroPadded(whole % 1000, width: 3)) s"
    }
}
