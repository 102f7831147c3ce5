import FenceCore
import Foundation
import Logging

/// Answers one verified fence_xvm request on a connected socket: challenge-response, permission check,
/// the operation through the fence service, and the result byte or host list. Shared by the multicast
/// listener (after it called the client back) and the TCP listener (on the accepted connection).
/// Each request runs with the gateway's configuration as it was when the request arrived (a reload
/// meanwhile does not change the key or groups half-way through).
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

        var origin: RequestOrigin { RequestOrigin(frontEnd: frontEnd, requester: identity, clientAddress: clientAddress) }
    }

    /// Why a session ended without an answer (the history claim is then released).
    enum Unanswered: Error {
        case authentication(ChallengeResponse.Failure)
    }

    /// Runs the session on the socket that `connect` returns (the call back, or the accepted connection).
    /// Connecting and challenge-response run in one hop to the blocking pool. Throws `Unanswered` or the
    /// connection's error if the client was never answered.
    func run(
        _ request: FenceXVMRequest, configuration: GatewayConfiguration,
        connect: @escaping @Sendable () throws -> Socket, from requester: Requester
    ) async throws {
        let (type, key, timeout) = (configuration.auth, configuration.key, configuration.ioTimeout)
        let socket: Socket
        do {
            socket = try await pool.run {
                let socket = try connect()
                try ChallengeResponse.authenticate(socket, type: type, key: key, timeout: timeout)
                return socket
            }
        } catch let failure as ChallengeResponse.Failure {
            logger.notice(
                "fence_xvm authentication failed; request dropped",
                metadata: ["peer.address": "\(requester.clientAddress ?? "-")", "reason": "\(failure)"])
            throw Unanswered.authentication(failure)
        }
        let answer = await answer(request, groups: configuration.groups, from: requester)
        do {
            try await pool.run { try socket.write(answer, timeout: timeout) }
        } catch {
            // fence_xvm closes right after reading what it needs (a host list's last byte is never read).
            logger.debug("fence_xvm answer not fully delivered", metadata: ["error": "\(error)"])
        }
    }

    /// The bytes to send back for `request`: one result byte, or a host list.
    private func answer(_ request: FenceXVMRequest, groups: FenceGroups, from requester: Requester) async -> [UInt8] {
        let target = DomainTarget(request.domain)
        let origin = requester.origin
        guard let operation = request.operation else {
            await service.recordUnsupported(
                action: "request-\(request.requestCode)", target: request.domain, origin: origin,
                reason: "unknown fence_xvm request code \(request.requestCode)")
            return [FenceXVMResult.failure.rawValue]
        }
        let action: FenceAction
        switch operation {
        case .null:
            await service.recordUnsupported(
                action: "null", target: request.domain, origin: origin,
                reason: "null is not carried out (fence_virtd's libvirt backend fails it too)")
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
                let domains = try await service.list(origin: origin)
                return HostList.encode(domains.filter { groups.lists($0, to: requester.identity) })
            } catch {
                return [FenceXVMResult.failure.rawValue]
            }
        case .off: action = .off
        case .on: action = .on
        case .reboot: action = .reboot
        case .status: action = .status
        }
        let fenceRequest = FenceRequest(action: action, target: target, origin: origin)
        guard groups.permits(requester: requester.identity, domain: request.domain) else {
            _ = try? await service.recordRefusal(
                fenceRequest, reason: "groups do not allow \(requester.identity) to \(action.rawValue) '\(request.domain)'")
            return [FenceXVMResult.permissionDenied.rawValue]
        }
        do {
            let outcome = try await service.perform(fenceRequest)
            if action == .status, outcome.power == .off { return [FenceXVMResult.off.rawValue] }
            return [FenceXVMResult.success.rawValue]
        } catch .domainNotFound where action == .status {
            return [FenceXVMResult.off.rawValue]
        } catch {
            return [FenceXVMResult.failure.rawValue]
        }
    }
}
