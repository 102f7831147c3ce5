import FuzzSupport
import MulticastGateway

/// A fixed key: the fuzzer explores parsing and verification, not key guessing.
let fuzzKey = [UInt8]((0..<64).map { UInt8($0 * 7 % 251) })

/// One input through everything a datagram meets before the daemon calls back: parse, verify with every
/// minimum hash, read the call-back address. Invariants are checked with `precondition`, so a violation is
/// a crash the fuzzer reports.
func fuzzOne(_ bytes: [UInt8]) {
    guard let request = try? FenceXVMRequest(bytes: bytes) else {
        precondition(bytes.count != FenceXVMRequest.size, "a 176-byte datagram must always parse")
        return
    }
    precondition(request.bytes == bytes, "parsing must keep every byte (signatures cover them all)")
    for minimum in HashType.allCases {
        let authentic = request.isAuthentic(key: fuzzKey, minimumHash: minimum)
        if authentic, minimum != .none {
            precondition(request.hashType >= minimum.rawValue, "accepted a hash weaker than the minimum")
        }
    }
    _ = request.callbackAddress?.description
    _ = request.requesterIdentity
    _ = request.operation
    _ = request.domain
    // A correctly signed copy must verify, and any change to its bytes must not.
    if let type = HashType(rawValue: request.hashType), type != .none,
        let signed = try? request.signed(hashType: type, key: fuzzKey)
    {
        precondition(signed.isAuthentic(key: fuzzKey, minimumHash: type), "a signed request did not verify")
        var tampered = signed.bytes
        let position = Int(bytes.first ?? 0) % FenceXVMRequest.size
        tampered[position] ^= 0x01
        if let changed = try? FenceXVMRequest(bytes: tampered), changed.hashType == signed.hashType {
            precondition(!changed.isAuthentic(key: fuzzKey, minimumHash: type), "a changed byte still verified")
        }
    }
}

#if FUZZING
@_cdecl("fuzz_fence_xvm_main")
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
