import Synchronization

/// What a fence request asks the hypervisor to do.
public enum FenceAction: String, Sendable, CaseIterable, Codable {
    /// Force the domain off at once (already off is success).
    case off
    /// Start the domain (already running is success).
    case on
    /// Force off, wait until off, start again. A domain that was off stays off and reports success.
    case reboot
    /// Read whether the domain is on or off.
    case status
    /// Ask the guest to power off (ACPI; `virDomainShutdown`); done once asked, the guest decides when.
    case shutdown
    /// Ask the guest to restart itself (`virDomainReboot`); done once asked.
    case gracefulReboot = "graceful-reboot"
    /// Inject a non-maskable interrupt (`virDomainInjectNMI`), e.g. to make a hung kernel dump.
    case nmi

    /// The actions that fence: what the REST API's `/domains/{domain}/{action}` and fence_xvm offer.
    public static let fencing: [FenceAction] = [.off, .on, .reboot]
}

/// The front end a request came through; recorded as the audit row's `source`.
public enum FrontEnd: String, Sendable, CaseIterable, Codable {
    case cli
    case http
    case multicast
    case tcp
    case redfish
}

/// Who sent a request, and through which front end.
public struct RequestOrigin: Sendable, Equatable {
    public var frontEnd: FrontEnd
    /// The authenticated identity: a token name, a Unix user, a guest's address. Nil if unknown.
    public var requester: String?
    /// The client's network address, if the request came over a network.
    public var clientAddress: String?
    /// The domain (cluster node) that sent the request, as far as the front end can tell; for fence-race
    /// arbitration. Nil if it cannot tell.
    public var sendingDomain: SendingDomain?
    /// The front end's id of the request (`RequestID.next()`), in every log line about it; nil if none.
    public var requestID: String?
    /// Cluster mode: the host that received the request, when it forwarded it here to be executed (the
    /// service then executes it without routing it again); nil for a request received here.
    public var receivedOn: String?
    /// A fence_xvm multicast request's duplicate key (its call back's claim in cluster mode); nil otherwise.
    public var claimKey: [UInt8]?

    public init(
        frontEnd: FrontEnd,
        requester: String?,
        clientAddress: String? = nil,
        sendingDomain: SendingDomain? = nil,
        requestID: String? = nil,
        receivedOn: String? = nil
    ) {
        self.receivedOn = receivedOn
        self.frontEnd = frontEnd
        self.requester = requester
        self.clientAddress = clientAddress
        self.sendingDomain = sendingDomain
        self.requestID = requestID
    }
}

/// Ids for requests, unique in this process, so that the log lines of one request can be found together
/// (metadata `request.id`).
public enum RequestID {
    private static let counter = Atomic<UInt64>(0)

    /// The next id: `r1`, `r2`, …
    public static func next() -> String {
        "r\(counter.add(1, ordering: .relaxed).newValue)"
    }
}

/// How a front end knows which domain sent a request.
public enum SendingDomain: Sendable, Equatable {
    /// Named: the domain a token was created for (`token create --from`).
    case named(DomainTarget)
    /// A guest's address (the fence_xvm call back's, or the TCP peer's): the service finds the domain that
    /// has it, from its configuration or from the hypervisor.
    case address(String)
}

/// One request to the fence service.
public struct FenceRequest: Sendable {
    public var action: FenceAction
    public var target: DomainTarget
    public var origin: RequestOrigin
    /// Who may do what: judged by the service on the domain the target resolves to.
    public var access: any AccessPolicy
    /// Overrides the service's operation timeout for this request (e.g. to fit a client's own timeout).
    public var timeout: Duration?
    /// If false and another operation on the domain is running, fail at once with `.domainBusy`.
    public var waitForDomain: Bool

    public init(
        action: FenceAction,
        target: DomainTarget,
        origin: RequestOrigin,
        access: any AccessPolicy = UnrestrictedAccess(),
        timeout: Duration? = nil,
        waitForDomain: Bool = true
    ) {
        self.action = action
        self.target = target
        self.origin = origin
        self.access = access
        self.timeout = timeout
        self.waitForDomain = waitForDomain
    }
}

/// The result of a request that succeeded.
public struct FenceOutcome: Sendable, Equatable {
    /// The audit row's id.
    public var operationID: Int64
    public var action: FenceAction
    /// The domain as resolved, with its state after the operation.
    public var domain: DomainInfo
    /// The domain's power state after the operation (for `status`, the answer).
    public var power: PowerState
    /// From arrival to completion, lock wait included.
    public var duration: Duration
    /// A remark worth showing, e.g. "already off" or a reboot whose restart failed.
    public var note: String?

    public init(
        operationID: Int64,
        action: FenceAction,
        domain: DomainInfo,
        power: PowerState,
        duration: Duration,
        note: String?
    ) {
        self.operationID = operationID
        self.action = action
        self.domain = domain
        self.power = power
        self.duration = duration
        self.note = note
    }
}
