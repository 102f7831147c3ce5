import FoundationEssentials
import Glibc
import Locking

/// How fence races are settled: when two cluster nodes fence each other at once, the first request wins
/// and the other is refused, because its requester is being fenced or was fenced moments ago.
public struct FenceRaceRules: Sendable, Equatable {
    /// How long after a fence (off or reboot) the fenced domain's own off and reboot requests are refused;
    /// zero turns arbitration off. A fenced node's agent is gone once its domain is off, so the window only
    /// has to cover a request it sent before it died and that arrives, or is retried by a slow client, after:
    /// Pacemaker gives a fence action 60 s (`stonith-timeout`) by default.
    public var window: Duration = .seconds(60)
    /// Domains (names or UUIDs) whose requests win a race within `grace`: a request from any other domain
    /// to fence one of these waits `grace` first, so that the preferred node's own request, if it comes,
    /// is decided first (Pacemaker's `priority-fencing-delay`, decided in one place).
    public var preferred: [String] = []
    public var grace: Duration = .seconds(5)
    /// Requester addresses (as the call back reached them, or the TCP peer) mapped to domains (names or
    /// UUIDs), for guests whose addresses libvirt cannot tell (no DHCP lease of a libvirt network, no entry
    /// in the host's ARP table, or an IPv6 address).
    public var requesters: [String: String] = [:]
    /// The longest a fence waits for the hypervisor to tell who sent it or the target's addresses. Both are
    /// bookkeeping for the rule: past this, the requester counts as unknown (decided as always) and the
    /// addresses as none, and the fence goes on. libvirt holds a domain while it destroys it (until its
    /// process is dead), and a listing of every domain waits for each one held.
    package var lookupTimeout: Duration = .seconds(1)
    /// Read a fenced domain's addresses when its fence begins, so that a request its guest sends to a
    /// fence_xvm listener just before it dies is still known as its. Costs a hypervisor call before each
    /// off and reboot: `serve` turns it on when a fence_xvm listener runs, and only then.
    public var recordsGuestAddresses = false

    public init() {}

    /// True unless the window is zero.
    public var isEnabled: Bool { window > .zero }

    /// Whether `domain` is one of the preferred ones (by exact name, or by UUID in any case).
    func prefers(_ domain: DomainInfo) -> Bool {
        preferred.contains { $0.utf8.elementsEqual(domain.name.utf8) || $0.equalsIgnoringASCIICase(domain.uuid) }
    }

    /// The domain `address` is mapped to in `requesters`, comparing addresses in canonical form.
    func configuredDomain(for address: String) -> DomainTarget? {
        let canonical = canonicalAddress(address)
        return requesters.first { canonicalAddress($0.key) == canonical }.map { DomainTarget($0.value) }
    }
}

/// Which domains are being fenced or were fenced lately, by domain UUID: the memory that fence-race
/// arbitration decides from. Shared by every front end, so a node fencing over Redfish and its peer over
/// fence_xvm are settled the same way.
final class FenceLedger: Sendable {
    private struct Entry {
        /// Fence operations (off, reboot) under way on the domain.
        var underWay: Set<Int64> = []
        /// The last one that fenced it, and when it ended.
        var lastFenced: (operation: Int64, at: ContinuousClock.Instant)?
        /// The domain as it was when its fence began, and its addresses then (canonical): a request from one
        /// of them comes from this domain even once it is off and the hypervisor no longer reports them.
        var domain: DomainInfo?
        var addresses: [String] = []

        /// Being fenced, or fenced less than `window` before `now`: a request from it is refused.
        func isRacing(at now: ContinuousClock.Instant, window: Duration) -> Bool {
            !underWay.isEmpty || lastFenced.map { now - $0.at < window } == true
        }
    }

    private let entries = Locked<[String: Entry]>([:])
    private let clock = ContinuousClock()

    /// A request's sender, as the ledger tells it apart.
    enum Requester: Sendable {
        /// A domain found elsewhere: its UUID decides.
        case domain(DomainInfo)
        /// A domain by UUID or exact name, as a token's `--from` or `FenceRaceRules.requesters` names it.
        case named(DomainTarget)
        /// A guest's address (the call back's, or the TCP peer): a domain that had it when its fence began.
        case address(String)

        /// The same requester, its address (if it is one) in canonical form.
        var canonical: Requester {
            if case .address(let address) = self { return .address(canonicalAddress(address)) }
            return self
        }
    }

    /// If `requester` is being fenced, or was fenced less than `window` ago, returns that domain and the
    /// operation that fences or fenced it, and marks nothing. Otherwise marks `target` as being fenced by
    /// `operation`, with `addresses` (read before, while it still runs), and returns nil. Finding the
    /// requester, deciding, and marking are one step under one lock: of two nodes fencing each other, exactly
    /// one gets through, and a request a node sends once its fence is marked is known as its.
    func claim(
        target: DomainInfo,
        addresses: [String] = [],
        by operation: Int64,
        requester: Requester?,
        window: Duration
    ) -> (requester: DomainInfo, operation: Int64)? {
        let now = clock.now
        let canonical = addresses.map(canonicalAddress)
        let requester = requester.map(\.canonical)
        return entries.withLock { entries in
            if let requester, let loser = Self.racingEntry(requester, in: entries, at: now, window: window),
                let domain = loser.domain, let fencedBy = loser.underWay.min() ?? loser.lastFenced?.operation
            {
                return (domain, fencedBy)
            }
            Self.mark(target, canonical, by: operation, in: &entries)
            // Forget what no longer matters, now and then (the map stays as small as the domains fenced lately).
            if entries.count > 64 {
                entries = entries.filter { $0.value.isRacing(at: now, window: window) }
            }
            return nil
        }
    }

    /// Marks `target` as being fenced by `operation`, with `addresses`, if no domain is being fenced or was
    /// fenced within `window`: then no requester can have lost a race, and none needs to be looked for.
    /// Returns false, and marks nothing, otherwise.
    func claimIfQuiet(target: DomainInfo, addresses: [String] = [], by operation: Int64, window: Duration) -> Bool {
        let now = clock.now
        let canonical = addresses.map(canonicalAddress)
        return entries.withLock { entries in
            guard !entries.values.contains(where: { $0.isRacing(at: now, window: window) }) else { return false }
            Self.mark(target, canonical, by: operation, in: &entries)
            return true
        }
    }

    /// The entry of the domain `requester` is, if it is being fenced or was fenced within `window` (an
    /// address: the first such domain that had it; the requester's address is canonical).
    private static func racingEntry(
        _ requester: Requester,
        in entries: [String: Entry],
        at now: ContinuousClock.Instant,
        window: Duration
    ) -> Entry? {
        let matches: (Entry) -> Bool =
            switch requester {
            case .domain(let domain): { $0.domain?.uuid == domain.uuid }
            case .named(let named): { $0.domain.map(named.names) == true }
            case .address(let address): { $0.addresses.contains(address) }
            }
        return entries.values.first { $0.domain != nil && $0.isRacing(at: now, window: window) && matches($0) }
    }

    private static func mark(
        _ target: DomainInfo,
        _ addresses: [String],
        by operation: Int64,
        in entries: inout [String: Entry]
    ) {
        entries[target.uuid, default: Entry()].underWay.insert(operation)
        entries[target.uuid]?.domain = target
        if !addresses.isEmpty { entries[target.uuid]?.addresses = addresses }
    }

    /// The domain being fenced, or fenced within `window`, that had `address` when its fence began; nil if
    /// none or several did.
    func fencedDomain(withAddress address: String, window: Duration) -> DomainInfo? {
        let canonical = canonicalAddress(address)
        let now = clock.now
        return entries.withLock { entries in
            let owners = entries.values.filter {
                $0.isRacing(at: now, window: window) && $0.addresses.contains(canonical)
            }.compactMap(\.domain)
            return owners.count == 1 ? owners[0] : nil
        }
    }

    /// The domain `target` names (exactly: its UUID, or its very name) if it is being fenced or was fenced
    /// within `window`: known without asking the hypervisor (which may be busy destroying that very domain).
    func racingDomain(_ target: DomainTarget, window: Duration) -> DomainInfo? {
        let now = clock.now
        return entries.withLock { Self.racingEntry(.named(target), in: $0, at: now, window: window)?.domain }
    }

    /// The operation on `target` ended; `fenced` if it fenced the domain (succeeded, or timed out: then it
    /// may have, and a node that may be dead is treated as dead).
    func finish(target: String, operation: Int64, fenced: Bool) {
        let now = clock.now
        entries.withLock { entries in
            entries[target, default: Entry()].underWay.remove(operation)
            if fenced { entries[target]?.lastFenced = (operation, now) }
        }
    }
}

/// `address` in the form `inet_ntop` writes it (IPv6 compressed, lower case); unchanged if it is not numeric.
func canonicalAddress(_ address: String) -> String {
    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    var v4 = in_addr()
    func text() -> String { String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    if inet_pton(AF_INET, address, &v4) == 1, inet_ntop(AF_INET, &v4, &buffer, socklen_t(buffer.count)) != nil {
        return text()
    }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, address, &v6) == 1, inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count)) != nil {
        let written = text()
        return written.hasPrefix("::ffff:") && written.contains(".") ? String(written.dropFirst(7)) : written
    }
    return address
}

extension DomainTarget {
    /// Whether this target names `domain`: by its UUID (in any case), or by its exact name.
    func names(_ domain: DomainInfo) -> Bool {
        if let uuid { return domain.uuid.lowercased() == uuid }
        return domain.name.utf8.elementsEqual(text.utf8)
    }
}
