internal import CMicroHTTPD
import FenceCore
import FoundationEssentials
import Glibc
import Locking
public import Logging
public import ServiceLifecycle
import Synchronization

/// Settings of the HTTP listener.
public struct HTTPServerConfiguration: Sendable {
    public var listen: ListenAddress = .default
    /// PEM certificate chain and key; nil for plain HTTP.
    public var tls: (certificate: String, key: String)?
    /// Larger request bodies are answered 413 without being stored.
    public var maximumBodyBytes = 64 * 1024
    /// Memory per connection for the request line and headers; larger headers are refused by libmicrohttpd.
    public var connectionMemoryBytes = 32 * 1024
    public var maximumConnections: UInt32 = 256
    /// Connections one client address may hold at once (0: no limit), so that one slow or hostile client
    /// cannot take every connection.
    public var maximumConnectionsPerAddress: UInt32 = 64
    /// Of `maximumConnections`, how many only clients that presented valid credentials lately may take
    /// (given `HTTPServer`'s `isCredentialed`): peers without credentials get at most the rest, from however
    /// many addresses.
    public var connectionsReservedForCredentialed: UInt32 = 32
    /// Idle time after which a connection is closed (not applied while a request is being answered).
    public var connectionTimeoutSeconds: UInt32 = 30
    /// libmicrohttpd's polling threads.
    public var threads: UInt32 = 2

    public init() {}
}

/// Why the HTTP server could not start.
public struct HTTPServerError: Error, CustomStringConvertible {
    public let description: String
}

/// An HTTP(S) server on libmicrohttpd that hands each request to an async handler; a lifecycle service.
///
/// `init` binds and starts libmicrohttpd, so that a taken port fails before anything is announced and the
/// bound port is known; `run()` answers. libmicrohttpd's own threads accept and parse; for each complete
/// request the handler starts at once on that thread (`Task.immediate`). A handler that never waits (a 401,
/// the metrics) is answered there and then, with no thread hop; one that waits (for the hypervisor's pool,
/// the audit store) gives the thread back at its first wait: the connection is suspended, and resumed with
/// the response when the handler ends. A slow handler (a fence operation waiting on the hypervisor) thus
/// holds no libmicrohttpd thread. On graceful shutdown (or cancellation) the server stops accepting, answers
/// requests that still arrive on open connections with 503, lets the ones being answered finish and their
/// responses go out, stops libmicrohttpd, and `run()` returns.
public final class HTTPServer: Service, Sendable {
    private let core: ServerCore
    private let daemon: Locked<DaemonPointer?>
    /// Ends once draining and every started request's response has gone out.
    private let drained: AsyncStream<Never>
    /// The port actually bound (useful with port 0).
    public let port: UInt16
    public let configuration: HTTPServerConfiguration

    /// Binds and starts libmicrohttpd; requests are answered once `run()` runs. Calls `MHD_start_daemon`.
    /// - Throws: `HTTPServerError` if the address cannot be bound or TLS cannot be set up.
    public init(
        configuration: HTTPServerConfiguration,
        logger: Logger,
        isCredentialed: (@Sendable (String) -> Bool)? = nil,
        connectionRefused: @escaping @Sendable () -> Void = {},
        handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse
    ) throws {
        self.configuration = configuration
        let (drained, finish) = AsyncStream.makeStream(of: Never.self)
        let core = ServerCore(
            maximumBodyBytes: configuration.maximumBodyBytes,
            logger: logger,
            admission: isCredentialed.map {
                ConnectionAdmission(
                    maximum: Int(configuration.maximumConnections),
                    reserved: Int(configuration.connectionsReservedForCredentialed),
                    isCredentialed: $0,
                    refused: connectionRefused
                )
            },
            handler: handler,
            finish: finish
        )
        do {
            try LingeringClose.shared.start()
        } catch {
            logger.warning(
                "HTTP connections will be closed at once, not in stages",
                metadata: ["error": "\(error)"]
            )
        }
        var flags =
            UInt32(MHD_USE_AUTO.rawValue | MHD_USE_INTERNAL_POLLING_THREAD.rawValue)
            | UInt32(MHD_ALLOW_SUSPEND_RESUME.rawValue)
        if configuration.listen.isIPv6 { flags |= UInt32(MHD_USE_IPv6.rawValue) }
        if configuration.tls != nil { flags |= UInt32(MHD_USE_TLS.rawValue) }
        let address = configuration.listen.socketAddress(port: configuration.listen.port)
        // The daemon's callbacks hold the core until it stops (a daemon left running at process exit keeps it).
        let coreContext = Unmanaged.passRetained(core).toOpaque()
        errno = 0
        let started = address.withUnsafeBytes { addressBytes in
            fg_mhd_start(
                flags,
                configuration.listen.port,
                accessHandler,
                coreContext,
                requestCompleted,
                coreContext,
                connectionNotified,
                coreContext,
                core.admission == nil ? nil : acceptPolicy,
                coreContext,
                addressBytes.baseAddress?.assumingMemoryBound(to: sockaddr.self),
                configuration.maximumConnections,
                configuration.maximumConnectionsPerAddress,
                configuration.connectionTimeoutSeconds,
                configuration.connectionMemoryBytes,
                configuration.threads,
                configuration.tls?.certificate,
                configuration.tls?.key
            )
        }
        guard let started else {
            Unmanaged<ServerCore>.fromOpaque(coreContext).release()
            let reason = errno != 0 ? String(cString: strerror(errno)) : "libmicrohttpd refused the settings"
            throw HTTPServerError(
                description:
                    "cannot listen on \(configuration.listen)\(configuration.tls == nil ? "" : " with TLS"): \(reason)"
            )
        }
        self.core = core
        self.drained = drained
        self.daemon = Locked(DaemonPointer(pointer: started))
        self.port = fg_mhd_bound_port(started)
    }

    /// Requests being answered now (their handlers run).
    public var inFlight: Int { core.inFlight.load(ordering: .relaxed) }

    /// Answers requests until graceful shutdown or cancellation, then drains (see the type's description)
    /// and stops libmicrohttpd. Calls `MHD_quiesce_daemon` and `MHD_stop_daemon`.
    public func run() async {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                for await _ in drained {}
            } onGracefulShutdown: {
                self.beginDraining()
            }
        } onCancel: {
            self.beginDraining()
        }
        let pending = core.dispatched.load(ordering: .acquiring)
        guard pending == 0 else {
            // Cancelled with requests still suspended: libmicrohttpd aborts when stopped so; leave it to
            // process exit (a graceful shutdown always waits for them instead).
            core.logger.error(
                "HTTP requests still unanswered at cancellation",
                metadata: ["http.pending": "\(pending)"]
            )
            return
        }
        daemon.withLock { daemon in
            if let running = daemon {
                MHD_stop_daemon(running.pointer)
                Unmanaged.passUnretained(core).release()
                daemon = nil
            }
        }
    }

    /// Serves while `body` runs, then drains and stops: for tools and tests that run no service group.
    public func serving<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.run() }
            let result: Result<T, any Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            beginDraining()
            try await group.waitForAll()
            return try result.get()
        }
    }

    /// Stops accepting connections; from now on requests are answered 503, and the request stream ends once
    /// the dispatched ones have been answered.
    private func beginDraining() {
        core.beginDraining()
        let listenSocket = daemon.withLock { daemon in daemon.map { MHD_quiesce_daemon($0.pointer) } ?? -1 }
        if listenSocket >= 0 { close(listenSocket) }
    }

    deinit {
        daemon.withLock { daemon in
            if let stopping = daemon {
                // libmicrohttpd aborts when stopped with suspended connections: then leave it to process exit.
                if core.dispatched.load(ordering: .acquiring) == 0 {
                    MHD_stop_daemon(stopping.pointer)
                    Unmanaged.passUnretained(core).release()
                }
                daemon = nil
            }
        }
    }
}

/// What the C callbacks reach through their `cls` pointer: owned by `HTTPServer`, and retained for the daemon
/// until it stops (a daemon left running, with requests suspended, keeps it to the end of the process).
final class ServerCore: Sendable {
    let maximumBodyBytes: Int
    let logger: Logger
    /// The reserve of connections for clients with credentials; nil when the server keeps none.
    let admission: ConnectionAdmission?
    let handler: @Sendable (HTTPRequest) async -> HTTPResponse
    /// Ends `run()`'s wait once drained.
    private let finish: AsyncStream<Never>.Continuation
    /// Handlers running now.
    let inFlight = Atomic<Int>(0)
    /// Requests started whose response has not gone out yet (until `requestCompleted`).
    let dispatched = Atomic<Int>(0)
    let draining = Atomic<Bool>(false)

    init(
        maximumBodyBytes: Int,
        logger: Logger,
        admission: ConnectionAdmission?,
        handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse,
        finish: AsyncStream<Never>.Continuation
    ) {
        self.maximumBodyBytes = maximumBodyBytes
        self.logger = logger
        self.admission = admission
        self.handler = handler
        self.finish = finish
    }

    /// Counts a complete request as started; false while draining (then it must be answered at once). The
    /// count goes up before the check, so that draining never ends with a request slipping in after it.
    func admit() -> Bool {
        dispatched.add(1, ordering: .sequentiallyConsistent)
        guard !draining.load(ordering: .sequentiallyConsistent) else {
            requestFinished()
            return false
        }
        return true
    }

    /// Runs the handler on the calling libmicrohttpd thread until it first waits (`Task.immediate`). Returns
    /// the response if it has answered by then; otherwise the connection is suspended, and resumed by the
    /// handler's task once it has answered.
    func start(
        _ request: HTTPRequest,
        context: RequestContext,
        connection: SuspendedConnection
    ) -> HTTPResponse? {
        Task.immediate(executorPreference: ResumeOnPoolThread.shared) { [self] in
            inFlight.add(1, ordering: .relaxed)
            let response = await handler(request)
            inFlight.subtract(1, ordering: .releasing)
            if context.answer(response) { MHD_resume_connection(connection.pointer) }
        }
        return context.answeredOrSuspend { MHD_suspend_connection(connection.pointer) }
    }

    /// A started request's response has gone out (or its connection closed).
    func requestFinished() {
        let remaining = dispatched.subtract(1, ordering: .sequentiallyConsistent).newValue
        if remaining == 0 && draining.load(ordering: .sequentiallyConsistent) { finish.finish() }
    }

    func beginDraining() {
        draining.store(true, ordering: .sequentiallyConsistent)
        if dispatched.load(ordering: .sequentiallyConsistent) == 0 { finish.finish() }
    }
}

/// Per-request state, kept in libmicrohttpd's `*con_cls` (retained there, released when the request completes).
final class RequestContext: @unchecked Sendable {
    // @unchecked: `body`, `tooLarge` and `dispatched` are touched only by libmicrohttpd's thread for this
    // connection; `phase` is shared with the handler's task, under its lock.
    var body: [UInt8] = []
    var tooLarge = false
    var dispatched = false
    /// Counted in `ServerCore.dispatched` until the request completes.
    var counted = false
    private let phase = Locked(Phase.waiting)

    /// Where the answer to a started request is.
    private enum Phase {
        /// The handler runs, and libmicrohttpd's thread has not given up the connection yet.
        case waiting
        /// The connection is suspended until the handler answers (and resumes it).
        case suspended
        /// The handler has answered; the response waits to be queued.
        case answered(HTTPResponse)
        /// The response is queued.
        case delivered
    }

    /// The handler's answer. True if the connection is suspended and must now be resumed by the caller.
    func answer(_ response: HTTPResponse) -> Bool {
        phase.withLock { phase in
            let suspended = if case .suspended = phase { true } else { false }
            phase = .answered(response)
            return suspended
        }
    }

    /// On libmicrohttpd's thread once the handler has run up to its first wait: the response if it has
    /// answered already, else nil after calling `suspend` (under the lock, so that an answer arriving meanwhile
    /// finds the connection suspended and resumes it).
    func answeredOrSuspend(_ suspend: () -> Void) -> HTTPResponse? {
        phase.withLock { phase in
            if case .answered(let response) = phase {
                phase = .delivered
                return response
            }
            suspend()
            phase = .suspended
            return nil
        }
    }

    /// The response of a resumed connection, once.
    func takeResponse() -> HTTPResponse? {
        phase.withLock { phase in
            guard case .answered(let response) = phase else { return nil }
            phase = .delivered
            return response
        }
    }
}

/// The `MHD_Daemon*`, owned by `HTTPServer`: libmicrohttpd's daemon calls are thread-safe, and the pointer
/// is only read or cleared under the server's mutex.
struct DaemonPointer: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// A connection pointer carried to the handler task, only to resume it (thread-safe with MHD_USE_ITC).
struct SuspendedConnection: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// libmicrohttpd's access handler: called once when the headers are in, once per body chunk, and once at the
/// end; again after a resume. Must not throw or trap: it runs on libmicrohttpd's threads.
private let accessHandler: MHD_AccessHandlerCallback = {
    cls,
    connection,
    url,
    method,
    _,
    uploadData,
    uploadDataSize,
    contextSlot in
    guard let cls, let connection, let url, let method, let uploadDataSize, let contextSlot else { return fg_mhd_no() }
    let core = Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue()

    guard let slot = contextSlot.pointee else {
        let context = RequestContext()
        contextSlot.pointee = Unmanaged.passRetained(context).toOpaque()
        if let length = header(connection, "Content-Length").flatMap(Int.init), length > core.maximumBodyBytes {
            context.dispatched = true
            return queue(Problem.payloadTooLarge(limit: core.maximumBodyBytes).response, on: connection)
        }
        return fg_mhd_yes()
    }
    let context = Unmanaged<RequestContext>.fromOpaque(slot).takeUnretainedValue()

    if uploadDataSize.pointee > 0 {
        let size = uploadDataSize.pointee
        if !context.tooLarge, let uploadData {
            if context.body.count + size > core.maximumBodyBytes {
                context.tooLarge = true
                context.body = []
            } else {
                uploadData.withMemoryRebound(to: UInt8.self, capacity: size) {
                    context.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: size))
                }
            }
        }
        uploadDataSize.pointee = 0
        return fg_mhd_yes()
    }

    if let response = context.takeResponse() {
        return queue(response, on: connection)
    }
    guard !context.dispatched else { return fg_mhd_yes() }
    context.dispatched = true
    if context.tooLarge {
        return queue(Problem.payloadTooLarge(limit: core.maximumBodyBytes).response, on: connection)
    }

    var valid = true
    func text(_ pointer: UnsafePointer<CChar>) -> String {
        guard let value = String(validatingCString: pointer) else {
            valid = false
            return ""
        }
        return value
    }
    let headers = pairs(connection, headers: true)
    let query = pairs(connection, headers: false)
    var request = HTTPRequest(
        method: text(method),
        path: text(url),
        query: query.values,
        headers: Dictionary(headers.values.map { ($0.key.lowercased(), $0.value) }) { first, _ in first },
        body: context.body,
        clientAddress: clientAddress(connection)
    )
    request.isValidUTF8 = valid && headers.valid && query.valid

    request.requestID = RequestID.next()
    // Counted until `requestCompleted`, unless refused while draining.
    guard core.admit() else { return queue(Problem.shuttingDown.response, on: connection) }
    context.counted = true
    if let response = core.start(request, context: context, connection: SuspendedConnection(pointer: connection)) {
        return queue(response, on: connection)
    }
    return fg_mhd_yes()
}

/// Releases the per-request context.
private let requestCompleted: MHD_RequestCompletedCallback = { cls, _, contextSlot, _ in
    guard let contextSlot, let slot = contextSlot.pointee else { return }
    let context = Unmanaged<RequestContext>.fromOpaque(slot).takeRetainedValue()
    contextSlot.pointee = nil
    if context.counted, let cls { Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue().requestFinished() }
}

/// libmicrohttpd's connection notification: connections are counted for `ConnectionAdmission`, and one about
/// to be closed is handed to `LingeringClose`, which keeps it open while closing it now would lose what was
/// sent.
private let connectionNotified: MHD_NotifyConnectionCallback = { context, connection, _, code in
    let admission = context.map { Unmanaged<ServerCore>.fromOpaque($0).takeUnretainedValue().admission } ?? nil
    if fg_mhd_is_started(code) { admission?.connectionStarted() }
    guard fg_mhd_is_closing(code), let connection else { return }
    admission?.connectionClosed()
    let socket = fg_mhd_connection_socket(connection)
    if socket >= 0 { LingeringClose.shared.adopt(socket, clientAddress: { clientAddress(connection) }) }
}

/// libmicrohttpd's accept policy (set only with a `ConnectionAdmission`): refuses a connection that would
/// take the reserve from a client without credentials.
private let acceptPolicy: MHD_AcceptPolicyCallback = { context, address, _ in
    guard let context, let admission = Unmanaged<ServerCore>.fromOpaque(context).takeUnretainedValue().admission
    else { return fg_mhd_yes() }
    return admission.admits(address.flatMap(addressText)) ? fg_mhd_yes() : fg_mhd_no()
}

private func header(_ connection: OpaquePointer, _ name: String) -> String? {
    fg_mhd_header(connection, name).flatMap { String(validatingCString: $0) }
}

/// Collected key/value pairs; the first value of a repeated key wins.
private final class PairCollector {
    var values: [String: String] = [:]
    var valid = true
    let decodesEscapes: Bool

    init(decodesEscapes: Bool) {
        self.decodesEscapes = decodesEscapes
    }
}

private let collectPair: MHD_KeyValueIterator = { cls, _, key, value in
    guard let cls, let key else { return fg_mhd_yes() }
    let collector = Unmanaged<PairCollector>.fromOpaque(cls).takeUnretainedValue()
    guard let name = String(validatingCString: key) else {
        collector.valid = false
        return fg_mhd_yes()
    }
    var text = ""
    if let value {
        guard let decoded = String(validatingCString: value) else {
            collector.valid = false
            return fg_mhd_yes()
        }
        text = decoded
    }
    // Query arguments arrive as sent (see fg_mhd_unescape_none); headers are never escaped.
    if collector.decodesEscapes {
        // A NUL in a value is kept: it then simply matches nothing.
        guard let decodedName = name.percentDecoded, let decodedText = text.percentDecoded else {
            collector.valid = false
            return fg_mhd_yes()
        }
        if collector.values[decodedName] == nil { collector.values[decodedName] = decodedText }
        return fg_mhd_yes()
    }
    if collector.values[name] == nil { collector.values[name] = text }
    return fg_mhd_yes()
}

private func pairs(_ connection: OpaquePointer, headers: Bool) -> (values: [String: String], valid: Bool) {
    let collector = PairCollector(decodesEscapes: !headers)
    withExtendedLifetime(collector) {
        let context = Unmanaged.passUnretained(collector).toOpaque()
        _ =
            headers
            ? fg_mhd_headers(connection, collectPair, context)
            : fg_mhd_query_arguments(connection, collectPair, context)
    }
    return (collector.values, collector.valid)
}

private func clientAddress(_ connection: OpaquePointer) -> String? {
    fg_mhd_client_address(connection).flatMap(addressText)
}

/// A socket address's numeric host as text, an IPv4-mapped IPv6 address as IPv4 (`127.0.0.1`, `::1`).
private func addressText(_ address: UnsafePointer<sockaddr>) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    switch Int32(address.pointee.sa_family) {
    case AF_INET:
        return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
            var raw = v4.pointee.sin_addr
            return inet_ntop(AF_INET, &raw, &buffer, socklen_t(buffer.count)).map { String(cString: $0) }
        }
    case AF_INET6:
        return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
            var raw = v6.pointee.sin6_addr
            guard let text = inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count)).map({ String(cString: $0) })
            else {
                return nil
            }
            return text.hasPrefix("::ffff:") && text.contains(".") ? String(text.dropFirst(7)) : text
        }
    default:
        return nil
    }
}

/// Queues `response` on the connection. Calls `MHD_create_response_from_buffer`, `MHD_add_response_header`,
/// `MHD_queue_response`.
private func queue(_ response: HTTPResponse, on connection: OpaquePointer) -> MHD_Result {
    guard let prepared = response.body.withUnsafeBytes({ fg_mhd_response($0.baseAddress, $0.count) }) else {
        return fg_mhd_no()
    }
    defer { MHD_destroy_response(prepared) }
    for (name, value) in response.headers {
        _ = MHD_add_response_header(prepared, name, value)
    }
    return MHD_queue_response(connection, UInt32(response.status), prepared)
}
