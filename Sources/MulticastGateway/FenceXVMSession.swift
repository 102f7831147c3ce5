import FenceCore
import Foundation
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

    /// Runs the session on the socket that `connect` returns (the call back, or the accepted connection).
    /// Connecting and challenge-response run in one hop to the blocking pool and must be done by
    /// `deadline`, however the peer paces its bytes. Once the peer has proved it holds the key, `claim`
    /// decides whether the request runs (false: a duplicate). Throws `Unanswered` or the connection's error
    /// if the request did not run; returns once it ran and its answer was sent (or could not be).
    func run(
        _ request: FenceXVMRequest,
        configuration: GatewayConfiguration,
        deadline: ContinuousClock.Instant,
        connect: @escaping @Sendable () throws -> Socket,
        claim: () -> Bool,
        from requester: Requester
    ) async throws {
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(requester.requestID)"
        let (type, key) = (configuration.auth, configuration.key)
        let socket: Socket
        do {
            socket = try await pool.run {
                let socket = try connect()
                try ChallengeResponse.authenticate(socket, type: type, key: key, deadline: deadline)
                return socket
            }
        } catch let failure as ChallengeResponse.Failure {
            logger.notice(
                "fence_xvm authentication failed; request dropped",
                metadata: ["peer.address": "\(requester.clientAddress ?? "-")", "reason": "\(failure)"]
            )
            throw Unanswered.authentication(failure)
        }
        guard claim() else {
            logger.debug(
                "fence_xvm request answered already; copy dropped",
                metadata: ["peer.address": "\(requester.clientAddress ?? "-")"]
            )
            throw Unanswered.duplicate
        }
        let answer = await answer(request, groups: configuration.groups, from: requester)
        let writeDeadline = ContinuousClock.now + configuration.ioTimeout
        do {
            // The answer is a byte or a short host list: the socket's buffer takes it at once, so it is sent
            // from here; only what it does not take waits on the pool.
            let sent = try socket.writeWithoutWaiting(answer)
            if sent < answer.count {
                let rest = Array(answer[sent...])
                try await pool.run { try socket.write(rest, deadline: writeDeadline) }
            }
        } catch {
            // fence_xvm closes right after reading what it needs (a host list's last byte is never read).
            logger.debug("fence_xvm answer not fully delivered", metadata: ["error": "\(error)"])
        }
    }

    /// The bytes to send back for `request`: one result byte, or a host list.
    private func answer(_ request: FenceXVMRequest, groups: FenceGroups, from requester: Requester) async -> [UInt8] {
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
                let domain = try await service.status(fenceRequest)
                return [domain.power == .off ? FenceXVMResult.off.rawValue : FenceXVMResult.success.rawValue]
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
