public import FenceCore
import FoundationEssentials
import Locking
public import Logging
public import ServiceLifecycle
import Synchronization

/// Why the gateway could not start.
public struct GatewayError: Error, CustomStringConvertible {
    public let description: String
}

/// The fence_xvm / fence_virt front end: a multicast listener that calls clients back, and an optional TCP
/// listener for `fence_virt -T`. Every request goes through the fence service and is audited with source
/// `multicast` or `tcp` and the requesting guest's address.
///
/// A lifecycle service: `run()` serves until graceful shutdown, then stops reading requests and returns
/// once the ones being answered have finished (each is bounded by its deadlines). Each listener sleeps on
/// its own thread until a datagram or connection arrives (or the shutdown wakes it); each verified request
/// is handled in a child task of `run()`, so a slow operation for one guest never delays another guest's.
public final class FenceXVMGateway: Service, Sendable {
    private let current: Locked<GatewayConfiguration>
    private let service: FenceService
    private let logger: Logger
    private let session: FenceXVMSession
    private let history: RequestHistory
    /// Signatures of the multicast requests received, to drop exact copies (replays) before a call back.
    private let signatures = SignatureMemory()
    private let sessions = GatewaySessions()
    private let multicastSocket: Socket?
    private let tcpSocket: Socket?
    /// Wakes the listener threads for good: signalled at graceful shutdown or cancellation.
    private let stopListening: Wakeup
    private let stopping = Atomic<Bool>(false)
    /// Listeners running and requests being handled: `run()` returns once both are none.
    private let drained = GatewayDrain()

    /// The TCP listener's bound address (useful with port 0), if there is one.
    public let tcpAddress: SocketAddress?

    /// The configuration in effect (the last one given to `reload(_:)`).
    public var configuration: GatewayConfiguration { current.withLock { $0 } }

    /// Takes the key, hashes, groups and timeouts of `new` for requests that arrive from now on (requests
    /// being answered finish with what they started with). Listener addresses and the session limits are set
    /// once: a change there needs a restart, and is returned as a note instead of being applied.
    public func reload(_ new: GatewayConfiguration) -> [String] {
        current.withLock { configuration in
            var notes: [String] = []
            var applied = new
            if new.multicast != configuration.multicast {
                notes.append("the multicast listener's address, port or interface changed: restart to apply")
                applied.multicast = configuration.multicast
            }
            if new.tcp != configuration.tcp {
                notes.append("the tcp listener's address changed: restart to apply")
                applied.tcp = configuration.tcp
            }
            // The session threads are sized from the limits at start.
            if new.maximumCallbacks != configuration.maximumCallbacks
                || new.tcpMaximumConnections != configuration.tcpMaximumConnections
                || new.tcpMaximumConnectionsPerAddress != configuration.tcpMaximumConnectionsPerAddress
            {
                notes.append("the call-back or connection limits changed: restart to apply")
                applied.maximumCallbacks = configuration.maximumCallbacks
                applied.tcpMaximumConnections = configuration.tcpMaximumConnections
                applied.tcpMaximumConnectionsPerAddress = configuration.tcpMaximumConnectionsPerAddress
            }
            configuration = applied
            return notes
        }
    }

    /// Binds the configured listeners. Call `start()` to serve.
    /// - Throws: `GatewayError` naming the address that could not be bound or joined.
    public init(service: FenceService, configuration: GatewayConfiguration, logger: Logger) throws {
        do {
            stopListening = try Wakeup()
        } catch {
            throw GatewayError(description: "cannot create the gateway's wake-up pipe: \(error)")
        }
        self.service = service
        self.current = Locked(configuration)
        self.logger = logger
        self.history = RequestHistory(window: configuration.historyWindow)
        // Every session runs at most one call on the pool at a time, and sessions are bounded by the listeners' limits;
        // a status answered at once may hold its thread past its session's end, at most as many as the fence
        // service has reads' threads (`FenceService.statusAtOnce`).
        let threads =
            configuration.maximumCallbacks + configuration.tcpMaximumConnections
            + service.configuration.hypervisorReadThreads
        self.session = FenceXVMSession(
            service: service,
            pool: BlockingThreadPool(
                name: "fencegate.gateway",
                maximumThreads: threads,
                maximumQueued: threads,
                resumesCallersHere: true
            ),
            logger: logger
        )
        if let multicast = configuration.multicast {
            guard let group = SocketAddress(host: multicast.group, port: multicast.port) else {
                throw GatewayError(
                    description: "multicast address \(multicast.group) is not a numeric IPv4 or IPv6 address"
                )
            }
            do {
                multicastSocket = try Socket.multicastReceiver(group: group, interface: multicast.interface)
            } catch {
                let hint = multicast.interface == nil ? " (no route for it? give the interface, e.g. the bridge)" : ""
                throw GatewayError(
                    description:
                        "cannot listen for fence_xvm on \(group) on \(multicast.interface ?? "the default interface"): \(error)\(hint)"
                )
            }
        } else {
            multicastSocket = nil
        }
        if let tcp = configuration.tcp {
            do {
                let socket = try Socket.listener(on: tcp)
                tcpSocket = socket
                tcpAddress = try socket.localAddress()
            } catch {
                throw GatewayError(description: "cannot listen for fence_virt on tcp \(tcp): \(error)")
            }
        } else {
            tcpSocket = nil
            tcpAddress = nil
        }
    }

    /// A request to handle, in a task of its own that starts on the listener's thread.
    private typealias Work = @Sendable () async -> Void

    /// Serves until graceful shutdown (or cancellation); then stops the listeners and returns once every
    /// request being handled has finished (each is bounded by its deadlines).
    public func run() async throws {
        do {
            try startListeners()
        } catch {
            for await _ in drained.stream {}  // the listeners that did start, stopped
            throw error
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                // Ends when the last listener has stopped and the last request has been handled.
                for await _ in drained.stream {}
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
        }
    }

    private func stop() {
        stopping.store(true, ordering: .releasing)
        stopListening.signal()
        // fence_virt -T clients are refused at once rather than left waiting in the backlog.
        tcpSocket?.stopListening()
    }

    /// One thread per listener, asleep until a request (or `stop()`). Each request's task starts on the
    /// listener's thread (`Task.immediate`) and leaves it at its first wait, which hands the call back's
    /// blocking part to the gateway's pool: one thread hop fewer than a task enqueued for Swift's pool.
    /// Throws if the system refuses a listener's thread; then the listeners already started are stopped.
    private func startListeners() throws(DetachedThread.StartFailure) {
        var loops: [(String, @Sendable () throws -> Work?)] = []
        if let multicastSocket {
            loops.append(("fencegate.multicast", { [self] in try receiveDatagram(multicastSocket) }))
        }
        if let tcpSocket {
            loops.append(("fencegate.tcp", { [self] in try acceptConnection(tcpSocket) }))
        }
        drained.listenersStarted(loops.count)
        for (index, (name, step)) in loops.enumerated() {
            do {
                try startListener(name: name, step)
            } catch {
                for _ in index..<loops.count { drained.listenerStopped() }
                stop()
                throw error
            }
        }
    }

    private func startListener(
        name: String,
        _ step: @escaping @Sendable () throws -> Work?
    ) throws(DetachedThread.StartFailure) {
        try DetachedThread.start(name: name) { [self] in
            while !stopping.load(ordering: .acquiring) {
                do {
                    if let work = try step() {
                        drained.requestStarted()
                        Task.immediate(executorPreference: ResumeOnPoolThread.shared) { [drained] in
                            await work()
                            drained.requestEnded()
                        }
                    }
                } catch {
                    if stopping.load(ordering: .acquiring) { break }  // the listener was shut at stop()
                    logger.error(
                        "fence_xvm listener error",
                        metadata: ["listener": "\(name)", "error": "\(error)"]
                    )
                    DetachedThread.sleep(milliseconds: 100)
                }
            }
            drained.listenerStopped()
        }
    }

    // MARK: - Multicast

    /// The next datagram's work, if it is a verified request to call back; nil otherwise.
    private func receiveDatagram(_ socket: Socket) throws -> Work? {
        guard let datagram = try socket.receiveDatagram(capacity: 512, orUntil: stopListening) else { return nil }
        let source = datagram.from?.host
        guard datagram.size == FenceXVMRequest.size, let request = try? FenceXVMRequest(bytes: datagram.bytes) else {
            logger.debug(
                "dropped a datagram of the wrong size",
                metadata: ["peer.address": "\(source ?? "-")", "size": "\(datagram.size)"]
            )
            return nil
        }
        let configuration = self.configuration
        guard request.isAuthentic(key: configuration.keyDigest, minimumHash: configuration.minimumHash) else {
            logger.debug("dropped a request that failed verification", metadata: ["peer.address": "\(source ?? "-")"])
            return nil
        }
        guard let callback = request.callbackAddress else {
            logger.debug(
                "dropped a request with an unknown address family",
                metadata: ["peer.address": "\(source ?? "-")"]
            )
            return nil
        }
        guard signatures.remember(request) else {
            service.metrics.replayDropped()
            logger.debug(
                "dropped a copy of a request received before (a replay)",
                metadata: ["peer.address": "\(source ?? "-")", "fence.callback": "\(callback)"]
            )
            return nil
        }
        let key = RequestHistory.Key(request)
        // Copies of a request being called back, or answered within the window, make no call back.
        guard history.beginCallback(key) else { return nil }
        guard sessions.open(listener: .multicast, address: callback.host, limits: configuration) else {
            history.endCallback(key)
            turnedAway(.multicast, address: "\(callback)")
            return nil
        }
        let requester = FenceXVMSession.Requester(
            frontEnd: .multicast,
            identity: callback.host,
            clientAddress: source,
            requestID: RequestID.next(),
            claimKey: key.bytes
        )
        let fences = request.operation == .off || request.operation == .reboot
        let (session, history, sessions, service) = (session, history, sessions, service)
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(requester.requestID)"
        let deadline = ContinuousClock.now + configuration.connectTimeout + configuration.ioTimeout
        let connectTimeout = configuration.connectTimeout
        return { [logger] in
            // Ended once: where the answer was sent (the socket closed), or when the work ends without one.
            let end = RunOnce {
                history.endCallback(key)
                sessions.close(listener: .multicast, address: callback.host)
            }
            defer { end.run() }
            // Cluster mode: every host may have heard the request; the first claim delivered calls back.
            guard
                await service.claimCallback(
                    key.bytes,
                    requesterAddress: fences ? callback.host : nil,
                    deadline: deadline
                )
            else {
                logger.debug("fence_xvm request called back by another host of the cluster")
                return
            }
            do {
                try await session.run(
                    request,
                    configuration: configuration,
                    deadline: deadline,
                    connect: { try Socket.connection(to: callback, timeout: connectTimeout) },
                    claim: { history.claim(key) },
                    answered: {
                        history.answered(key)
                        end.run()
                    },
                    from: requester
                )
            } catch {
                // Not answered here: a copy of the request may be answered by another host.
                await service.releaseCallback(key.bytes)
                logger.info(
                    "fence_xvm request not answered",
                    metadata: ["fence.callback": "\(callback)", "error": "\(error)"]
                )
            }
        }
    }

    /// Counts a call back or connection turned away at the listener's limits. Logged at debug only: a peer
    /// needs no key to open connections, so one log line each would be a flood of its own; the counter
    /// (`fencegate_gateway_sessions_refused_total`) is what to watch.
    private func turnedAway(_ listener: GatewaySessions.Listener, address: String) {
        let name = listener == .multicast ? "multicast" : "tcp"
        service.metrics.sessionTurnedAway(listener: name)
        logger.debug(
            "session turned away at the listener's limits",
            metadata: ["listener": "\(name)", "peer.address": "\(address)"]
        )
    }

    // MARK: - TCP (fence_virt -T)

    /// The next connection's work; nil if it was turned away (or none came before the shutdown).
    private func acceptConnection(_ listener: Socket) throws -> Work? {
        guard let (connection, peer) = try listener.accept(orUntil: stopListening) else { return nil }
        let configuration = self.configuration
        let identity = peer?.host ?? "unknown"
        guard sessions.open(listener: .tcp, address: identity, limits: configuration) else {
            turnedAway(.tcp, address: identity)
            return nil  // `connection` closes as it goes out of scope
        }
        let requester = FenceXVMSession.Requester(
            frontEnd: .tcp,
            identity: identity,
            clientAddress: peer?.host,
            requestID: RequestID.next()
        )
        let (session, history, sessions) = (session, history, sessions)
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(requester.requestID)"
        // One deadline for everything before the client has proved it holds the key.
        let deadline = ContinuousClock.now + configuration.ioTimeout
        // The session takes the socket and holds the only reference: it is closed before the session ends.
        let handOff = SocketHandOff(connection)
        return { [logger] in
            let end = RunOnce { sessions.close(listener: .tcp, address: identity) }
            defer {
                _ = try? handOff.take()  // not taken by a session (no request, or a bad one): closed here
                end.run()
            }
            let bytes: [UInt8]
            do {
                bytes = try await session.pool.run {
                    try handOff.borrow().read(exactly: FenceXVMRequest.size, deadline: deadline)
                }
            } catch {
                logger.debug(
                    "fence_virt connection closed before a full request",
                    metadata: ["peer.address": "\(identity)", "error": "\(error)"]
                )
                return
            }
            guard let request = try? FenceXVMRequest(bytes: bytes),
                request.isAuthentic(key: configuration.keyDigest, minimumHash: configuration.minimumHash)
            else {
                logger.debug(
                    "dropped a tcp request that failed verification",
                    metadata: ["peer.address": "\(identity)"]
                )
                return
            }
            let key = RequestHistory.Key(request)
            guard !history.isKnown(key) else { return }
            do {
                try await session.run(
                    request,
                    configuration: configuration,
                    deadline: deadline,
                    connect: { try handOff.take() },
                    claim: { history.claim(key) },
                    answered: {
                        history.answered(key)
                        end.run()
                    },
                    from: requester
                )
            } catch {
                logger.debug(
                    "fence_virt request not answered",
                    metadata: ["peer.address": "\(identity)", "error": "\(error)"]
                )
            }
        }
    }
}

/// Counts the gateway's sessions (call backs, TCP connections) and enforces their limits.
final class GatewaySessions: Sendable {
    enum Listener { case multicast, tcp }

    private struct State {
        var callbacks = 0
        var connections = 0
        /// Open sessions by listener and address (the call-back address, or the TCP peer).
        var byAddress: [Listener: [String: Int]] = [:]
    }

    private let state = Locked(State())

    /// Sessions open now; for tests.
    var census: (callbacks: Int, connections: Int) { state.withLock { ($0.callbacks, $0.connections) } }

    /// Counts a new session if the limits allow it; false if it must be turned away.
    func open(listener: Listener, address: String?, limits: GatewayConfiguration) -> Bool {
        state.withLock { state in
            let fromAddress = state.byAddress[listener]?[address ?? ""] ?? 0
            switch listener {
            case .multicast:
                guard state.callbacks < limits.maximumCallbacks, fromAddress < limits.maximumCallbacksPerAddress
                else { return false }
                state.callbacks += 1
            case .tcp:
                guard state.connections < limits.tcpMaximumConnections,
                    fromAddress < limits.tcpMaximumConnectionsPerAddress
                else { return false }
                state.connections += 1
            }
            state.byAddress[listener, default: [:]][address ?? ""] = fromAddress + 1
            return true
        }
    }

    func close(listener: Listener, address: String?) {
        state.withLock { state in
            switch listener {
            case .multicast: state.callbacks -= 1
            case .tcp: state.connections -= 1
            }
            let remaining = (state.byAddress[listener]?[address ?? ""] ?? 1) - 1
            state.byAddress[listener, default: [:]][address ?? ""] = remaining > 0 ? remaining : nil
        }
    }
}

/// Counts the gateway's running listeners and the requests being handled; its stream ends once the last
/// listener has stopped and the last request has ended.
final class GatewayDrain: Sendable {
    private struct Counts {
        var listeners = 0
        var requests = 0
    }

    private let counts = Locked(Counts())
    let stream: AsyncStream<Never>
    private let finish: AsyncStream<Never>.Continuation

    init() {
        (stream, finish) = AsyncStream.makeStream(of: Never.self)
    }

    func listenersStarted(_ count: Int) {
        counts.withLock { $0.listeners = count }
        endIfDrained()
    }

    func listenerStopped() {
        counts.withLock { $0.listeners -= 1 }
        endIfDrained()
    }

    func requestStarted() {
        counts.withLock { $0.requests += 1 }
    }

    func requestEnded() {
        counts.withLock { $0.requests -= 1 }
        endIfDrained()
    }

    private func endIfDrained() {
        if counts.withLock({ $0.listeners == 0 && $0.requests == 0 }) { finish.finish() }
    }
}
