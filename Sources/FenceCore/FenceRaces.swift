import Foundation
import Synchronization

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
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let clock = ContinuousClock()

    /// If `requester` is being fenced, or was fenced less than `window` ago, returns the operation that
    /// fences or fenced it and marks nothing. Otherwise marks `target` as being fenced by `operation` and
    /// returns nil. One step under one lock: of two nodes fencing each other, exactly one gets through.
    func claim(target: DomainInfo, by operation: Int64, requester: String?, window: Duration) -> Int64? {
        let now = clock.now
        return entries.withLock { entries in
            if let requester, let entry = entries[requester] {
                if let under = entry.underWay.min() { return under }
                if let last = entry.lastFenced, now - last.at < window { return last.operation }
            }
            entries[target.uuid, default: Entry()].underWay.insert(operation)
            entries[target.uuid]?.domain = target
            // Forget what no longer matters, now and then (the map stays as small as the domains fenced lately).
            if entries.count > 64 {
                entries = entries.filter {
                    !$0.value.underWay.isEmpty || $0.value.lastFenced.map { now - $0.at < window } == true
                }
            }
            return nil
        }
    }

    /// Marks `target` as being fenced by `operation` if no domain is being fenced or was fenced within
    /// `window`: then no requester can have lost a race, and none needs to be looked up. Returns false, and
    /// marks nothing, otherwise.
    func claimIfQuiet(target: DomainInfo, by operation: Int64, window: Duration) -> Bool {
        let now = clock.now
        return entries.withLock { entries in
            let busy = entries.values.contains { entry in
                !entry.underWay.isEmpty || entry.lastFenced.map { now - $0.at < window } == true
            }
            guard !busy else { return false }
            entries[target.uuid, default: Entry()].underWay.insert(operation)
            entries[target.uuid]?.domain = target
            return true
        }
    }

    /// Keeps `addresses` (read while `target` still runs) for `fencedDomain(withAddress:)`.
    func record(addresses: [String], of target: DomainInfo) {
        guard !addresses.isEmpty else { return }
        entries.withLock { $0[target.uuid, default: Entry()].addresses = addresses.map(canonicalAddress) }
    }

    /// The domain being fenced, or fenced lately, that had `address` when its fence began; nil if none or
    /// several did.
    func fencedDomain(withAddress address: String) -> DomainInfo? {
        let canonical = canonicalAddress(address)
        return entries.withLock { entries in
            let owners = entries.values.filter { $0.addresses.contains(canonical) }.compactMap(\.domain)
            return owners.count == 1 ? owners[0] : nil
        }
    }

    /// The domain `target` names (exactly: its UUID, or its very name) if it is being fenced or was fenced
    /// within `window`: what the rule decides on, known without asking the hypervisor (which may be busy
    /// destroying that very domain).
    func racingDomain(_ target: DomainTarget, window: Duration) -> DomainInfo? {
        let now = clock.now
        return entries.withLock { entries in
            entries.values.first { entry in
                guard let domain = entry.domain,
                    !entry.underWay.isEmpty || entry.lastFenced.map({ now - $0.at < window }) == true
                else { return false }
                if let uuid = target.uuid { return domain.uuid.lowercased() == uuid }
                return domain.name.utf8.elementsEqual(target.text.utf8)
            }?.domain
        }
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
