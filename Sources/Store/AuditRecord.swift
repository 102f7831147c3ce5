public import FoundationEssentials

/// Where an audited operation stands.
public enum AuditState: String, Sendable, CaseIterable, Codable {
    /// The intent row is written; the operation has not finished (or its process is still running it).
    case started
    /// The operation finished and its result is recorded.
    case finished
    /// The process running the operation died before recording a result; what happened is unknown.
    case interrupted
}

/// How an audited operation ended.
public enum AuditResult: String, Sendable, CaseIterable, Codable {
    /// The action did what was asked (for `status`: the state was read).
    case success
    /// The action failed: unknown domain, hypervisor error or unavailable.
    case failure
    /// The operation did not finish within its timeout; it is reported as failed.
    case timedOut = "timed_out"
    /// The request was refused before reaching the hypervisor (credentials, scope, groups).
    case refused
    /// The process died while the operation ran (set by recovery).
    case interrupted
}

/// What a front end asks for, written before the hypervisor is touched.
public struct AuditIntent: Sendable, Equatable {
    /// The front end: `cli`, `http`, `multicast`, `tcp`, `redfish`.
    public var source: String
    /// Who asked: a token name, a Unix user, a guest identity. Nil when unknown.
    public var requester: String?
    /// The client's network address, if the request came over a network.
    public var clientAddress: String?
    /// The domain as the requester named it (name or UUID).
    public var target: String
    /// The domain's name as resolved by the hypervisor, if it was found.
    public var domainName: String?
    /// The domain's UUID as resolved by the hypervisor, if it was found.
    public var domainUUID: String?
    /// The action: `off`, `on`, `reboot`, `status`, …
    public var action: String
    /// When the request arrived.
    public var requestedAt: Date

    public init(
        source: String,
        requester: String?,
        clientAddress: String?,
        target: String,
        domainName: String?,
        domainUUID: String?,
        action: String,
        requestedAt: Date
    ) {
        self.source = source
        self.requester = requester
        self.clientAddress = clientAddress
        self.target = target
        self.domainName = domainName
        self.domainUUID = domainUUID
        self.action = action
        self.requestedAt = requestedAt
    }
}

/// How an operation ended, written after it finished.
public struct AuditCompletion: Sendable, Equatable {
    public var result: AuditResult
    /// The domain's power state afterwards (`on` / `off`), when known.
    public var powerState: String?
    /// A stable, machine-readable error kind such as `domain_not_found`; nil on success.
    public var errorCode: String?
    /// The human-readable error or remark; nil when there is nothing to say.
    public var message: String?
    public var finishedAt: Date

    public init(result: AuditResult, powerState: String?, errorCode: String?, message: String?, finishedAt: Date) {
        self.result = result
        self.powerState = powerState
        self.errorCode = errorCode
        self.message = message
        self.finishedAt = finishedAt
    }
}

/// One row of the audit log.
public struct AuditRecord: Sendable, Equatable, Identifiable {
    public var id: Int64
    public var intent: AuditIntent
    public var state: AuditState
    /// Nil while `state` is `started`.
    public var result: AuditResult?
    public var powerState: String?
    public var errorCode: String?
    public var message: String?
    public var finishedAt: Date?
    /// `finishedAt - requestedAt`, in microseconds precision.
    public var duration: Duration?

    public init(
        id: Int64,
        intent: AuditIntent,
        state: AuditState,
        result: AuditResult?,
        powerState: String?,
        errorCode: String?,
        message: String?,
        finishedAt: Date?,
        duration: Duration?
    ) {
        self.id = id
        self.intent = intent
        self.state = state
        self.result = result
        self.powerState = powerState
        self.errorCode = errorCode
        self.message = message
        self.finishedAt = finishedAt
        self.duration = duration
    }

    public var source: String { intent.source }
    public var requester: String? { intent.requester }
    public var clientAddress: String? { intent.clientAddress }
    public var target: String { intent.target }
    public var domainName: String? { intent.domainName }
    public var domainUUID: String? { intent.domainUUID }
    public var action: String { intent.action }
    public var requestedAt: Date { intent.requestedAt }
}

extension Date {
    /// Microseconds since 1970, the unit every timestamp is stored in.
    public var microsecondsSince1970: Int64 { Int64((timeIntervalSince1970 * 1_000_000).rounded()) }

    public init(microsecondsSince1970 value: Int64) {
        self.init(timeIntervalSince1970: Double(value) / 1_000_000)
    }
}
