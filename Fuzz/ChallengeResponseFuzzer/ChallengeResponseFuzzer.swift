import FenceCore
import FuzzSupport
import MulticastGateway

/// A fixed key: the fuzzer explores the reader, not key guessing.
let fuzzKey = [UInt8]((0..<64).map { UInt8($0 * 13 % 251) })
/// `fuzzKey`, hashed once, as the gateway holds its key.
let fuzzKeyDigest = KeyedDigest(key: fuzzKey)

/// The hashes a call back can use (with `none` nothing is exchanged).
let hashTypes: [HashType] = [.sha1, .sha256, .sha512]

/// One input through the daemon's half of the challenge-response, over a real socket pair: byte 0 picks the
/// hash, the rest (at most 4 KiB) is what the client sends before closing its side. Invariants, checked with
/// `precondition` so that a violation is a crash the fuzzer reports:
/// - nothing authenticates: the input cannot know the daemon's fresh random challenge;
/// - the failure is the right one: a short stream is a transport failure, a full one a wrong response;
/// - the daemon sends nothing before the client's challenge is complete, and then exactly its answer to that
///   challenge (H(key ‖ challenge), padded) followed by a 64-byte challenge of its own.
func fuzzOne(_ input: [UInt8]) {
    guard let selector = input.first else { return }
    let type = hashTypes[Int(selector) % hashTypes.count]
    let stream = Array(input.dropFirst().prefix(4096))
    let size = ChallengeResponse.challengeSize
    do throws(SocketError) {
        let (daemon, client) = try Socket.connectedPair()
        try client.write(stream, timeout: .seconds(1))
        try client.shutdownWriting()
        let failure: ChallengeResponse.Failure?
        do throws(ChallengeResponse.Failure) {
            try ChallengeResponse.authenticate(daemon, type: type, key: fuzzKeyDigest, timeout: .seconds(1))
            failure = nil
        } catch {
            failure = error
        }
        switch failure {
        case nil:
            preconditionFailure("\(stream.count) bytes that cannot know the daemon's challenge authenticated")
        case .wrongResponse:
            precondition(stream.count >= 2 * size, "a wrong response reported before a whole one arrived")
        case .transport:
            precondition(stream.count < 2 * size, "a transport failure although the whole exchange arrived")
        }
        try daemon.shutdownWriting()
        var sent: [UInt8] = []
        while let byte = try? client.read(exactly: 1, timeout: .seconds(1)) { sent += byte }
        if stream.count < size {
            precondition(sent.isEmpty, "the daemon answered an incomplete challenge")
        } else {
            precondition(sent.count == 2 * size, "the daemon sent \(sent.count) bytes, not answer + challenge")
            precondition(
                Array(sent.prefix(size)) == type.paddedDigest(key: fuzzKey, Array(stream.prefix(size))),
                "the daemon's answer is not H(key ‖ their challenge)"
            )
        }
    } catch {
        preconditionFailure("socket pair: \(error)")
    }
}

#if FUZZING
@_cdecl("fuzz_challenge_response_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc: argc, argv: argv, fuzzOne)
}
#else
/// Without libFuzzer: replays the files given as arguments (a corpus, or a crash to reproduce).
@main
struct ReplayCorpus {
    static func main() { replayCorpus(CommandLine.arguments.dropFirst(), fuzzOne) }
}
#endif
