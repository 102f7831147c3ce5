/// The hypervisor as the fence service needs it: blocking calls, addressed by domain UUID after lookup.
///
/// Every method may block for as long as the hypervisor takes; `FenceService` calls them only from its
/// blocking thread pool, never from Swift's cooperative pool. `LibvirtHypervisor` is the one real
/// implementation; tests wrap it to inject faults libvirt cannot produce on demand (a hanging call).
///
/// Methods throw `LibvirtError` or `FenceError`; `FenceError(mapping:…)` turns either into a `FenceError`.
public protocol Hypervisor: Sendable {
    /// The URI this hypervisor talks to, for messages.
    var uri: String { get }

    /// Looks a domain up by name or, when the target is a canonical UUID, by UUID.
    func domain(_ target: DomainTarget) throws -> DomainInfo

    /// Every defined domain, running or not.
    func domains() throws -> [DomainInfo]

    /// The current state of the domain with `uuid`, or nil if it no longer exists (a destroyed transient domain).
    func state(ofDomain uuid: String) throws -> DomainState?

    /// Forces the domain off at once (`virDomainDestroy`).
    func destroy(domain uuid: String) throws

    /// Starts a defined domain from its persistent definition (`virDomainCreate`).
    func start(domain uuid: String) throws

    /// The live definition with secrets, needed to restart a transient domain after destroying it.
    func definition(ofDomain uuid: String) throws -> String

    /// Starts a transient domain from a definition (`virDomainCreateXML`).
    func startTransient(definition: String) throws

    /// Succeeds if the hypervisor is reachable now, reconnecting if needed.
    func checkConnection() throws

    /// Asks the guest to power off (`virDomainShutdown`); returns once asked.
    func shutdown(domain uuid: String) throws

    /// Asks the guest to restart (`virDomainReboot`); returns once asked.
    func reboot(domain uuid: String) throws

    /// Injects a non-maskable interrupt (`virDomainInjectNMI`).
    func injectNMI(domain uuid: String) throws

    /// The IP addresses the hypervisor knows for the running domain's interfaces: from its DHCP leases, else
    /// the host's ARP table. Never from the guest agent: the guest answers that one (a hung guest after 5 s,
    /// one that answers libvirt's sync and not the query, never), and the domain asked about is often the
    /// one being fenced.
    func addresses(ofDomain uuid: String) throws -> [String]

    /// Calls `observer` after a domain is defined, undefined, started or stopped, as the hypervisor reports
    /// it (and after a reconnect, when changes may have been missed).
    func observeChanges(_ observer: @escaping @Sendable () -> Void)

    /// Runs `body` at once with reads on a connection no other call is using, if one is open and alive now;
    /// returns nil without running it otherwise. Never opens a connection or waits for one: for a caller that
    /// must not wait for the hypervisor to be reached (the calls in `body` still take as long as they take).
    func withIdleConnection<T>(_ body: (any DomainReader) throws -> T) throws -> T?

    /// Runs `body` with reads on one connection, taken (or opened) as any call takes one: for a caller that
    /// reads several things of one domain in one blocking call.
    func withReader<T>(_ body: (any DomainReader) throws -> T) throws -> T
}

/// The reads `Hypervisor.withIdleConnection` and `Hypervisor.withReader` offer, on the connection taken.
public protocol DomainReader {
    /// Looks a domain up by name or, when the target is a canonical UUID, by UUID; reads nothing else yet.
    /// Throws as `Hypervisor.domain(_:)` does for a domain that does not exist.
    func find(_ target: DomainTarget) throws -> any FoundDomain
}

/// A domain one lookup found. Its reads go to that very domain (the handle the lookup returned, no second
/// lookup: on a remote hypervisor each read is one call to the daemon, and a lookup by UUID one more).
public protocol FoundDomain {
    var name: String { get }
    /// Canonical lower-case UUID text.
    var uuid: String { get }

    /// What `Hypervisor.domain(_:)` reports of it: its state and persistence, read now.
    func info() throws -> DomainInfo

    /// False for a transient domain.
    func isPersistent() throws -> Bool

    /// Its state now, or nil if it no longer exists (a destroyed transient domain, an undefined one).
    func state() throws -> DomainState?
}

extension Hypervisor {
    /// No change notifications (a hypervisor without events).
    public func observeChanges(_ observer: @escaping @Sendable () -> Void) {}

    /// Never an idle connection (a hypervisor that cannot tell): callers take their usual path.
    public func withIdleConnection<T>(_ body: (any DomainReader) throws -> T) throws -> T? { nil }
}

/// What the service knows of one domain.
public struct DomainInfo: Sendable, Equatable, Hashable {
    public var name: String
    /// Canonical lower-case UUID text.
    public var uuid: String
    public var state: DomainState
    /// False for a transient domain, which disappears when destroyed.
    public var isPersistent: Bool

    public init(name: String, uuid: String, state: DomainState, isPersistent: Bool) {
        self.name = name
        self.uuid = uuid
        self.state = state
        self.isPersistent = isPersistent
    }

    public var power: PowerState { state.power }
}
