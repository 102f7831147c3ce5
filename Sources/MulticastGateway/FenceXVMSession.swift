import FenceCore
import FoundationEssentials
import Logging

/// Answers one verified fence_xvm request on a connected socket: challenge-response, duplicate check,
/// the operation through the fence service (which applies the groups to the resolved domain), and the
/// result byte or host list. Shared by the multicast listener (after it called the client back) and the
/// TCP listener (on the accepted connection). Each request runs with the gateway's configuration as it was
/// when the request arrived (a reload meanwhile does not change the key or groups half-way through).
struct FenceXVMSession {
    let service: FenceService
    let pool: BlockingThreadPool
    let logger: Logger

    /// Who asked and through what: the identity for groups, and the audit origin.
    struct Requester {
        let frontEnd: FrontEnd
        /// The packet's address (multicast) or the TCP peer (tcp).
        let identity: String
        /// The address the bytes came from.
        let clientAddress: String?
        /// This request's id in the log (`RequestID`).
        let requestID: String
        /// A multicast request's duplicate key (its call back's claim in cluster mode).
        var claimKey: [UInt8]? = nil

        /// The audit origin; the guest's address also tells the service which domain sent the request.
        var origin: RequestOrigin {
            var origin = RequestOrigin(
                frontEnd: frontEnd,
                requester: identity,
                clientAddress: clientAddress,
                sendingDomain: .address(identity),
                requestID: requestID
            )
            origin.claimKey = claimKey
            return origin
        }
    }

    /// Why a session ended without an answer.
    enum Unanswered: Error {
        case authentication(ChallengeResponse.Failure)
        /// Another copy of the request was (or is being) answered: this one must not run again.
        case duplicate
    }

    /// What the pool's part of a session came to.
    private enum Connected {
        /// Another copy of the request was (or is being) answered.
        case duplicate
        /// Answered on the pool's thread already (a status with nothing to wait for); the error if the answer
        /// could not be delivered.
        case answered(SocketError?)
        /// Authenticated and claimed (at `since`): the answer is the fence service's to make.
        case open(Socket, since: ContinuousClock.Instant)
    }

    /// Runs the session on the socket that `connect` returns (the call back, or the accepted connection; a
    /// socket `connect` hands over: the session keeps the only reference to it).
    /// Connecting and challenge-response run in one hop to the blocking pool and must be done by
    /// `deadline`, however the peer paces its bytes. Once the peer has proved it holds the key, `claim`
    /// decides whether the request runs (false: a duplicate). A status that needs nothing waited for is
    /// answered in the same hop (`FenceService.statusAtOnce`); every other request through the fence service.
    /// `answered` is called once the answer was sent (or could not be) and the socket closed, on the thread
    /// that sent it, so that the caller can end the session before the client's next request arrives.
    /// Throws `Unanswered` or the connection's error if the request did not run; returns once it ran.
    func run(
        _ request: FenceXVMRequest,
        configuration: GatewayConfiguration,
        deadline: ContinuousClock.Instant,
        connect: @escaping @Sendable () throws -> Socket,
        claim: @escaping @Sendable () -> Bool,
        answered: @escaping @Sendable () -> Void,
        from requester: Requester
    ) async throws {
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(requester.requestID)"
        let (type, key, ioTimeout) = (configuration.auth, configuration.keyDigest, configuration.ioTimeout)
        let status = statusRequest(request, groups: configuration.groups, from: requester)
        let service = self.service
        // A status answered at once waits for libvirt on the pool's thread: past the deadline a status has
        // through the fence service, the session ends without it (the thread runs on until libvirt answers).
        let sessionDeadline = deadline + service.configuration.operationTimeout
        let lingers = requester.frontEnd == .multicast  // a call back (`peerCloseGrace`)
        let connected: Connected
        do {
            connected = try await pool.run(until: sessionDeadline) {
                var socket: Socket? = try connect()
                try ChallengeResponse.authenticate(socket!, type: type, key: key, deadline: deadline)
                guard claim() else { return .duplicate }
                let started = ContinuousClock.now
                guard let status, let domain = service.statusAtOnce(status, since: started) else {
                    return .open(socket!, since: started)
                }
                let delivery = Self.send([Self.statusByte(domain)], on: socket!, deadline: .now + ioTimeout)
                if delivery == nil, lingers {
                    _ = socket!.awaitPeerClose(deadline: min(.now + Self.peerCloseGrace, sessionDeadline))
                }
                socket = nil  // closed here, before the session ends
                answered()
                return .answered(delivery)
            }
        } catch let failure as ChallengeResponse.Failure {
            logger.notice(
                "fence_xvm authentication failed; request dropped",
                metadata: ["peer.address": "\(requester.clientAddress ?? "-")", "reason": "\(failure)"]
            )
            throw Unanswered.authentication(failure)
        }
        switch consume connected {
        case .duplicate:
            logger.debug(
                "fence_xvm request answered already; copy dropped",
                metadata: ["peer.address": "\(requester.clientAddress ?? "-")"]
            )
            throw Unanswered.duplicate
        case .answered(let failure):
            if let failure {
                logger.debug("fence_xvm answer not fully delivered", metadata: ["error": "\(failure)"])
            }
        case .open(let socket, let started):
            let answer = await answer(request, since: started, groups: configuration.groups, from: requester)
            // The socket is closed when `deliver` returns (see there for a rare exception).
            await deliver(answer, on: consume socket, within: ioTimeout, lingering: lingers, logger: logger)
            answered()
        }
    }

    /// Sends `answer` and closes the socket (the caller hands over its reference), waiting first, if
    /// `lingering`, for the client to close (`peerCloseGrace`). The answer is a byte or a short host list: the
    /// socket's buffer takes it at once, so it is sent from here; what it does not take, and the wait, run in
    /// one job on the pool, which takes the socket out of a hand-off box and lets it go inside the job, so that
    /// it is closed by the time this returns (with the pool full: at once).
    private func deliver(
        _ answer: [UInt8],
        on socket: consuming Socket,
        within timeout: Duration,
        lingering: Bool,
        logger: Logger
    ) async {
        var failure: (any Error)?
        do {
            let sent = try socket.writeWithoutWaiting(answer)
            let rest = Array(answer[sent...])
            if !rest.isEmpty || lingering {
                let (box, deadline) = (SocketHandOff(copy socket), ContinuousClock.now + timeout)
                do {
                    failure = try await pool.run { () -> SocketError? in
                        guard let socket = try? box.take() else { return nil }
                        // Rare: a host list larger than the socket's buffer.
                        if !rest.isEmpty, let failure = Self.send(rest, on: socket, deadline: deadline) {
                            return failure
                        }
                        if lingering { _ = socket.awaitPeerClose(deadline: .now + Self.peerCloseGrace) }
                        return nil
                    }
                } catch {
                    _ = try? box.take()
                    if !rest.isEmpty { failure = error }  // else all was sent: closed without the wait
                }
            }
        } catch {
            failure = error
        }
        if let failure {
            // fence_xvm closes right after reading what it needs (a host list's last byte is never read).
            logger.debug("fence_xvm answer not fully delivered", metadata: ["error": "\(failure)"])
        }
    }

    /// How long a call back waits, once its answer is sent, for the client to close first (fence_xvm closes as
    /// soon as it has read the answer), so that the TIME_WAIT state stays on the client's side
    /// (`Socket.awaitPeerClose`). A client that takes longer is closed on. Only call backs wait: a connection
    /// the TCP listener accepted leaves no state that Fencegate's own connections must search through.
    static let peerCloseGrace: Duration = .milliseconds(200)

    /// Writes `bytes` by `deadline`; the error if they could not all be sent.
    private static func send(_ bytes: [UInt8], on socket: Socket, deadline: ContinuousClock.Instant) -> SocketError? {
        do throws(SocketError) {
            try socket.write(bytes, deadline: deadline)
            return nil
        } catch {
            return error
        }
    }

    /// A status's answer byte: off, or on (fence_xvm's "success").
    private static func statusByte(_ domain: DomainInfo) -> UInt8 {
        domain.power == .off ? FenceXVMResult.off.rawValue : FenceXVMResult.success.rawValue
    }

    /// `request` as the fence service's status request, if it is a status naming a domain in UTF-8 (what
    /// `FenceService.statusAtOnce` may answer); nil otherwise.
    private func statusRequest(
        _ request: FenceXVMRequest,
        groups: FenceGroups,
        from requester: Requester
    ) -> FenceRequest? {
        guard request.operation == .status, let domain = request.domainText else { return nil }
        return FenceRequest(
            action: .status,
            target: DomainTarget(domain),
            origin: requester.origin,
            access: GroupAccess(groups: groups, requester: requester.identity)
        )
    }

    /// The bytes to send back for `request`: one result byte, or a host list.
    /// `started`: when the request was claimed, for a status's deadline and duration.
    private func answer(
        _ request: FenceXVMRequest,
        since started: ContinuousClock.Instant,
        groups: FenceGroups,
        from requester: Requester
    ) async -> [UInt8] {
        let origin = requester.origin
        let access = GroupAccess(groups: groups, requester: requester.identity)
        guard let operation = request.operation else {
            await service.recordUnsupported(
                action: "request-\(request.requestCode)",
                target: request.domain,
                origin: origin,
                reason: "unknown fence_xvm request code \(request.requestCode)"
            )
            return [FenceXVMResult.failure.rawValue]
        }
        let action: FenceAction
        switch operation {
        case .null:
            await service.recordUnsupported(
                action: "null",
                target: request.domain,
                origin: origin,
                reason: "null is not carried out (fence_virtd's libvirt backend fails it too)"
            )
            return [FenceXVMResult.failure.rawValue]
        case .devstatus:
            do {
                try await service.monitor(origin: origin)
                return [FenceXVMResult.success.rawValue]
            } catch {
                return [FenceXVMResult.failure.rawValue]
            }
        case .hostlist:
            do {
                return HostList.encode(try await service.list(origin: origin, visibleTo: access))
            } catch {
                return [FenceXVMResult.failure.rawValue]
            }
        case .off: action = .off
        case .on: action = .on
        case .reboot: action = .reboot
        case .status: action = .status
        }
        guard let domain = request.domainText else {
            await service.recordUnsupported(
                action: action.rawValue,
                target: request.domain,
                origin: origin,
                reason: "the domain field is not UTF-8: it names no domain"
            )
            return [action == .status ? FenceXVMResult.off.rawValue : FenceXVMResult.failure.rawValue]
        }
        let fenceRequest = FenceRequest(action: action, target: DomainTarget(domain), origin: origin, access: access)
        do {
            if action == .status {
                // A read: answered first, recorded with the audit log's next commit.
                return [Self.statusByte(try await service.status(fenceRequest, since: started))]
            }
            _ = try await service.perform(fenceRequest)
            return [FenceXVMResult.success.rawValue]
        } catch .refused {
            return [FenceXVMResult.permissionDenied.rawValue]
        } catch .domainNotFound where action == .status {
            return [FenceXVMResult.off.rawValue]
        } catch {
            return [FenceXVMResult.failure.rawValue]
        }
    }
}
