public import FenceCore
import Foundation

/// A fault injector around the real libvirt test driver, for faults the test driver cannot produce on
/// demand: a call that hangs (a stuck QEMU monitor), a destroy that leaves the domain running (a process
/// in uninterruptible sleep), a start that fails. Every other call goes to the real driver unchanged.
public final class FaultyHypervisor: Hypervisor, @unchecked Sendable {
    public enum Method: String, Sendable {
        case domain, domains, state, destroy, start, definition, startTransient, checkConnection, shutdown, reboot,
            injectNMI
        case addresses
    }

    public enum Fault {
        /// The call blocks its thread until the gate opens, then proceeds normally.
        case hang(Gate)
        /// The call reports success and does nothing.
        case ignore
        /// The call fails with a libvirt error, doing nothing.
        case fail
        /// The call takes effect, then reports a libvirt error (a reply lost on the way back).
        case failAfter
    }

    public let real: LibvirtHypervisor
    private let lock = NSLock()
    private var faults: [String: Fault] = [:]
    private var log: [String] = []

    public init(_ real: LibvirtHypervisor) {
        self.real = real
    }

    public var uri: String { real.uri }

    /// Injects `fault` into every later call of `method` for the domain with `uuid` ("*" for calls without one).
    public func inject(_ fault: Fault, into method: Method, for uuid: String) {
        lock.withLock { faults["\(method.rawValue) \(uuid)"] = fault }
    }

    /// Every call so far, as "method uuid", plus "method uuid returned" when it returned; in order.
    public var calls: [String] { lock.withLock { log } }

    private func call<T>(_ method: Method, _ uuid: String, _ body: () throws -> T, ignored: T) throws -> T {
        let key = "\(method.rawValue) \(uuid)"
        let fault = lock.withLock { () -> Fault? in
            log.append(key)
            return faults[key]
        }
        defer { lock.withLock { log.append(key + " returned") } }
        switch fault {
        case .hang(let gate):
            gate.pass()
            return try body()
        case .ignore:
            return ignored
        case .fail:
            throw LibvirtError(
                code: .operationFailed,
                subsystem: 0,
                message: "injected failure",
                operation: "\(method.rawValue)"
            )
        case .failAfter:
            _ = try body()
            throw LibvirtError(
                code: .operationFailed,
                subsystem: 0,
                message: "injected failure after the call took effect",
                operation: "\(method.rawValue)"
            )
        case nil:
            return try body()
        }
    }

    public func domain(_ target: DomainTarget) throws -> DomainInfo {
        try call(
            .domain,
            target.text,
            { try real.domain(target) },
            ignored: DomainInfo(name: "", uuid: "", state: .noState, isPersistent: true)
        )
    }

    public func domains() throws -> [DomainInfo] {
        try call(.domains, "*", { try real.domains() }, ignored: [])
    }

    public func state(ofDomain uuid: String) throws -> DomainState? {
        try call(.state, uuid, { try real.state(ofDomain: uuid) }, ignored: nil)
    }

    public func destroy(domain uuid: String) throws {
        try call(.destroy, uuid, { try real.destroy(domain: uuid) }, ignored: ())
    }

    public func start(domain uuid: String) throws {
        try call(.start, uuid, { try real.start(domain: uuid) }, ignored: ())
    }

    public func definition(ofDomain uuid: String) throws -> String {
        try call(.definition, uuid, { try real.definition(ofDomain: uuid) }, ignored: "")
    }

    public func startTransient(definition: String) throws {
        try call(.startTransient, "*", { try real.startTransient(definition: definition) }, ignored: ())
    }

    public func checkConnection() throws {
        try call(.checkConnection, "*", { try real.checkConnection() }, ignored: ())
    }

    public func shutdown(domain uuid: String) throws {
        try call(.shutdown, uuid, { try real.shutdown(domain: uuid) }, ignored: ())
    }

    public func reboot(domain uuid: String) throws {
        try call(.reboot, uuid, { try real.reboot(domain: uuid) }, ignored: ())
    }

    public func addresses(ofDomain uuid: String) throws -> [String] {
        try call(.addresses, uuid, { try real.addresses(ofDomain: uuid) }, ignored: [])
    }

    public func observeChanges(_ observer: @escaping @Sendable () -> Void) {
        real.observeChanges(observer)
    }

    public func injectNMI(domain uuid: String) throws {
        try call(.injectNMI, uuid, { try real.injectNMI(domain: uuid) }, ignored: ())
    }

    /// The real driver's idle connection, with this injector's faults on its reads.
    public func withIdleConnection<T>(_ body: (any DomainReader) throws -> T) throws -> T? {
        try real.withIdleConnection { reader in try body(FaultyReader(faulty: self, real: reader)) }
    }

    /// The real driver's reads on one connection, with this injector's faults on them.
    public func withReader<T>(_ body: (any DomainReader) throws -> T) throws -> T {
        try real.withReader { reader in try body(FaultyReader(faulty: self, real: reader)) }
    }

    /// The reads of one connection, through the injector: a lookup is `domain` (keyed by the target's text),
    /// the found domain's state `state` (keyed by its UUID).
    private struct FaultyReader: DomainReader {
        let faulty: FaultyHypervisor
        let real: any DomainReader

        func find(_ target: DomainTarget) throws -> any FoundDomain {
            try faulty.call(
                .domain,
                target.text,
                { FaultyFoundDomain(faulty: faulty, real: try real.find(target)) },
                ignored: NothingFound()
            )
        }
    }

    /// A found domain whose state reads go through the injector; what the lookup itself reads does not.
    private struct FaultyFoundDomain: FoundDomain {
        let faulty: FaultyHypervisor
        let real: any FoundDomain

        var name: String { real.name }
        var uuid: String { real.uuid }
        func info() throws -> DomainInfo { try real.info() }
        func isPersistent() throws -> Bool { try real.isPersistent() }

        func state() throws -> DomainState? {
            try faulty.call(.state, uuid, { try real.state() }, ignored: nil)
        }
    }

    /// What an ignored lookup (`Fault.ignore`) reports: a domain with no name, UUID or state.
    private struct NothingFound: FoundDomain {
        var name: String { "" }
        var uuid: String { "" }
        func info() throws -> DomainInfo { DomainInfo(name: "", uuid: "", state: .noState, isPersistent: true) }
        func isPersistent() throws -> Bool { true }
        func state() throws -> DomainState? { nil }
    }
}

/// A gate that blocks the threads passing through it until opened; counts who arrived.
public final class Gate: @unchecked Sendable {
    private let condition = NSCondition()
    private var isOpen = false
    private var arrivals = 0

    /// Blocks the calling thread until the gate is open.
    public init() {}

    public func pass() {
        condition.lock()
        arrivals += 1
        condition.broadcast()
        while !isOpen { condition.wait() }
        condition.unlock()
    }

    public func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }

    /// How many threads have arrived (and are blocked, while the gate is closed).
    public var arrived: Int {
        condition.lock()
        defer { condition.unlock() }
        return arrivals
    }
}
