import Cluster
import FuzzSupport

/// One input through the cluster message decoder, as a member's CPG message arrives. Invariants, checked
/// with `precondition` so that a violation is a crash the fuzzer reports: decoding never traps or reads out of
/// bounds; what decodes re-encodes to the same bytes (one encoding per message), and a version read from a
/// message that decodes is this host's.
func fuzzOne(_ bytes: [UInt8]) {
    guard let message = try? ClusterMessage(decoding: bytes) else { return }
    precondition(message.encoded == bytes, "a decoded message must re-encode to the same bytes")
    precondition(ClusterMessage.version(of: bytes) == ClusterMessage.protocolVersion, "decoded another version")
}

#if FUZZING
@_cdecl("fuzz_cluster_wire_main")
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
