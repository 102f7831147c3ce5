import Locking

/// Client addresses that presented a valid token of scope `fence` lately (`FenceService.authenticate`; after a
/// restart, the audit log's rows of the last `memory`), so that a listener can keep room for the fence agents
/// while peers without such credentials hold the rest (the HTTP server's reserve). Only a valid fence token
/// adds an address: a peer without one cannot fill this memory, nor a holder of a read token take the reserve.
public final class CredentialedClients: Sendable {
    /// How long an address counts after its last valid credential: Pacemaker checks a fence device every
    /// minute or so (its monitor), and a fence follows minutes or months later.
    public static let memory: Duration = .seconds(24 * 3600)
    /// The most addresses remembered; beyond it the one whose credentials are oldest is forgotten.
    public static let capacity = 4096

    private let addresses = Locked<[String: ContinuousClock.Instant]>([:])
    private let capacity: Int

    public init(capacity: Int = CredentialedClients.capacity) {
        self.capacity = capacity
    }

    /// Notes that `address` presented a valid fence token at `time` (now by default).
    func note(_ address: String, at time: ContinuousClock.Instant = .now) {
        addresses.withLock { addresses in
            if let known = addresses[address], known >= time { return }
            if addresses.updateValue(time, forKey: address) == nil, addresses.count > capacity,
                let oldest = addresses.min(by: { $0.value < $1.value })?.key
            {
                addresses[oldest] = nil
            }
        }
    }

    /// Whether `address` presented a valid credential within `memory`.
    public func contains(_ address: String) -> Bool {
        guard let last = addresses.withLock({ $0[address] }) else { return false }
        return ContinuousClock.now - last < Self.memory
    }
}
