package import FenceCore

/// fence_xvm's mutual challenge-response, from the daemon's side (protocol doc §4): the client challenges
/// first and the daemon answers, then the daemon challenges and checks the answer. 64-byte challenges,
/// H(key ‖ challenge) zero-padded to 64 bytes. With `none`, nothing is exchanged.
/// Package-visible for its fuzz target.
package enum ChallengeResponse {
    package static let challengeSize = 64

    /// Why authentication failed.
    package enum Failure: Error, CustomStringConvertible {
        case wrongResponse
        case transport(SocketError)

        package var description: String {
            switch self {
            case .wrongResponse: return "the client's response to our challenge is wrong (key or auth mismatch)"
            case .transport(let error): return "\(error)"
            }
        }
    }

    /// Runs the daemon's half on a connected socket, all of it within `timeout`. Blocking: call off the
    /// cooperative pool.
    package static func authenticate(
        _ socket: Socket,
        type: HashType,
        key: KeyedDigest,
        timeout: Duration
    ) throws(Failure) {
        try authenticate(socket, type: type, key: key, deadline: .now + timeout)
    }

    /// Runs the daemon's half on a connected socket, all of it by `deadline`. Blocking: call off the
    /// cooperative pool.
    package static func authenticate(
        _ socket: Socket,
        type: HashType,
        key: KeyedDigest,
        deadline: ContinuousClock.Instant
    ) throws(Failure) {
        guard type != .none else { return }
        do {
            let theirChallenge = try socket.read(exactly: challengeSize, deadline: deadline)
            let ourChallenge: [UInt8]
            do {
                ourChallenge = try SecureRandom.bytes(count: challengeSize)
            } catch {
                throw Failure.transport(.errno("random", 5))
            }
            try socket.write(type.paddedDigest(key: key, theirChallenge) + ourChallenge, deadline: deadline)
            let answer = try socket.read(exactly: challengeSize, deadline: deadline)
            guard constantTimeEquals(answer, type.paddedDigest(key: key, ourChallenge)) else {
                throw Failure.wrongResponse
            }
        } catch let error as SocketError {
            throw .transport(error)
        } catch let error as Failure {
            throw error
        } catch {
            throw .wrongResponse
        }
    }
}
