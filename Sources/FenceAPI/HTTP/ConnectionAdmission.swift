import Synchronization

/// Which new connections the HTTP server takes, beyond libmicrohttpd's own limits: once all but `reserved` of
/// `maximum` connections are open, only clients that presented valid credentials lately (`isCredentialed`)
/// get one. So peers without credentials, from however many addresses and however slowly they send, cannot
/// take the last connections from the fence agents that hold tokens: Pacemaker's monitor of a fence device
/// authenticates every minute or so, and keeps its address known.
final class ConnectionAdmission: Sendable {
    let maximum: Int
    let reserved: Int
    private let isCredentialed: @Sendable (String) -> Bool
    /// Called for each connection refused for want of credentials.
    private let refused: @Sendable () -> Void
    /// Connections open now (libmicrohttpd's notifications: started, closed).
    private let open = Atomic<Int>(0)

    init(
        maximum: Int,
        reserved: Int,
        isCredentialed: @escaping @Sendable (String) -> Bool,
        refused: @escaping @Sendable () -> Void
    ) {
        self.maximum = maximum
        self.reserved = min(reserved, maximum)
        self.isCredentialed = isCredentialed
        self.refused = refused
    }

    func connectionStarted() { open.add(1, ordering: .relaxed) }
    func connectionClosed() { open.subtract(1, ordering: .relaxed) }

    /// Whether a new connection from `address` may be taken now. (Connections accepted at the same moment by
    /// libmicrohttpd's several threads may each see the count before the others' start: the reserve can
    /// shrink by one per thread, never grow.)
    func admits(_ address: String?) -> Bool {
        if open.load(ordering: .relaxed) < maximum - reserved { return true }
        if let address, isCredentialed(address) { return true }
        refused()
        return false
    }
}
