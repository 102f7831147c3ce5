import Locking

/// Client addresses that presented valid credentials lately (`FenceService.authenticate`), so that a
/// listener can keep room for them while peers without credentials hold the rest (the HTTP server's
/// reserve). Only a valid credential adds an address: a peer without one cannot fill this memory.
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

    /// Notes that `address` presented a valid credential now.
    func note(_ address: String) {
        let now = ContinuousClock.now
        addresses.withLock { addresses in
            if addresses.updateValue(now, forKey: address) == nil, addresses.count > capacity,
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
