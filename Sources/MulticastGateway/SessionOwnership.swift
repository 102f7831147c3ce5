import Locking

/// An action that runs at most once, whichever of its callers comes first: a session's end, from the thread
/// that sent its answer or from the session's task when it ends without one.
final class RunOnce: Sendable {
    private let action: Locked<(@Sendable () -> Void)?>

    init(_ action: @escaping @Sendable () -> Void) {
        self.action = Locked(action)
    }

    func run() {
        action.withLock { $0.take() }?()
    }
}

/// Holds a socket until the session (or the pool job that ends its answer) takes it, so that the taker holds
/// the only other reference and the descriptor is closed when it lets go, before the session is counted closed.
final class SocketHandOff: Sendable {
    private let socket: Locked<Socket?>

    init(_ socket: Socket) {
        self.socket = Locked(socket)
    }

    /// The socket, for a call that returns before `take()` (reading the request).
    func borrow() throws(SocketError) -> Socket {
        guard let socket = socket.withLock({ $0 }) else { throw .closed("read") }
        return socket
    }

    /// The socket, handed over: the hand-off no longer holds it.
    func take() throws(SocketError) -> Socket {
        guard let socket = socket.withLock({ $0.take() }) else { throw .closed("read") }
        return socket
    }
}
