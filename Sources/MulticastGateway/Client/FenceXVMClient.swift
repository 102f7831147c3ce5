import FenceCore
import FoundationEssentials
import Glibc

/// A fence_xvm client written from the protocol doc, for load generation and tests (not a product front end).
/// It signs a request, multicasts it out of one interface, takes the daemon's call back on its own TCP
/// listener, runs the client's half of challenge-response and reads the answer. Blocking: one request at a
/// time per client, on the caller's thread.
package final class FenceXVMClient {
    /// What went wrong with one request.
    package enum Failure: Error, CustomStringConvertible {
        /// No daemon called back within the timeout.
        case noCallback
        /// The daemon's answer to our challenge was wrong (wrong key or auth type).
        case daemonNotAuthentic
        case transport(SocketError)

        package var description: String {
            switch self {
            case .noCallback: return "no daemon called back"
            case .daemonNotAuthentic: return "the daemon's response to our challenge is wrong"
            case .transport(let error): return "\(error)"
            }
        }
    }

    private let group: SocketAddress
    private let sender: Socket
    private let listener: Socket
    private let callback: SocketAddress
    private let key: [UInt8]
    private let hash: HashType
    private let auth: HashType
    private let timeout: Duration
    private let retransmitInterval: Duration

    /// Number of datagrams sent again because no call back came within the retransmit interval.
    package private(set) var retransmissions = 0

    /// - Parameters:
    ///   - group: the multicast group and port the daemon listens on (IPv4).
    ///   - interface: the interface to send from.
    ///   - callbackHost: this client's IPv4 address on that interface, where the daemon calls back.
    package init(
        group: SocketAddress,
        interface: String,
        callbackHost: [UInt8],
        key: [UInt8],
        hash: HashType = .sha256,
        auth: HashType = .sha256,
        timeout: Duration = .seconds(30),
        retransmitInterval: Duration = .seconds(1)
    ) throws {
        self.group = group
        self.key = key
        self.hash = hash
        self.auth = auth
        self.timeout = timeout
        self.retransmitInterval = retransmitInterval
        sender = try Socket.multicastSender(interface: interface)
        listener = try Socket.listener(on: SocketAddress(ipv4: callbackHost, port: 0))
        callback = try listener.localAddress()
    }

    /// Sends `operation` for `domain` and returns the daemon's one-byte answer (0 success, 1 failure,
    /// 2 off, 3 permission denied). Not for host lists.
    package func request(_ operation: FenceXVMOperation, domain: String) throws(Failure) -> UInt8 {
        // Like fence_xvm: every copy shares one sequence number, with fresh random bytes and hash.
        let unsigned = FenceXVMRequest(
            operation: operation,
            domain: domain,
            address: callback.bytes,
            port: callback.port,
            sequenceNumber: UInt32.random(in: 1...UInt32.max),
            family: 2
        )
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        let connection = try Self.mappingErrors { () throws -> Socket in
            while clock.now < deadline {
                try sender.send(try unsigned.signed(hashType: hash, key: key).bytes, to: group)
                if let (connection, _) = try listener.accept(timeout: min(retransmitInterval, deadline - clock.now)) {
                    return connection
                }
                retransmissions += 1
            }
            throw Failure.noCallback
        }
        return try Self.answerCallback(on: connection, auth: auth, key: key, timeout: timeout)
    }

    /// The client's half of a call back (§4), on a connection the daemon opened: challenge the daemon, check
    /// its answer, answer its challenge, then read the one-byte result.
    static func answerCallback(
        on connection: Socket,
        auth: HashType,
        key: [UInt8],
        timeout: Duration
    ) throws(Failure) -> UInt8 {
        try mappingErrors {
            if auth != .none {
                let size = ChallengeResponse.challengeSize
                let ourChallenge = try SecureRandom.bytes(count: size)
                try connection.write(ourChallenge, timeout: timeout)
                let answer = try connection.read(exactly: size, timeout: timeout)
                guard constantTimeEquals(answer, auth.paddedDigest(key: key, ourChallenge)) else {
                    throw Failure.daemonNotAuthentic
                }
                let theirChallenge = try connection.read(exactly: size, timeout: timeout)
                try connection.write(auth.paddedDigest(key: key, theirChallenge), timeout: timeout)
            }
            return try connection.read(exactly: 1, timeout: timeout)[0]
        }
    }

    /// Runs `body`, turning socket errors into `.transport` and the secure random source failing into a
    /// transport error too; a `Failure` passes through.
    private static func mappingErrors<T>(_ body: () throws -> T) throws(Failure) -> T {
        do {
            return try body()
        } catch let error as Failure {
            throw error
        } catch let error as SocketError {
            throw .transport(error)
        } catch {
            throw .transport(.errno("random", EIO))
        }
    }
}
